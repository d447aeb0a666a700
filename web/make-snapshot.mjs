// pyauth-web: make the Pyodide memory snapshot of a bundle, at bundle time, under Node.
//
//   node make-snapshot.mjs BUNDLE_DIR SNAPSHOT_FILE BYTECODE_FILE SYS_PATH WHEEL...
//
// Boots the bundle's own Pyodide in snapshot-making mode and installs the wheels the loader
// installs at boot into one zip, BYTECODE_FILE: every module compiled to bytecode (unchecked
// hash-based .pyc beside its source, PEP 552: valid whatever the files' times, and where
// zipimport looks), with the sources and dist-info. The zip is written at SYS_PATH in Pyodide's
// file system and put first on sys.path (zipimport), then the whole runtime is imported: the
// pure-Python core and PyJWT (pyauth_web.preload) and the browser adapter
// (pyauth_web.browser.runtime; nothing runs, no token is read). The adapter's `js` names are
// recorded as paths (`js.fetch` is "fetch") and bound to the page's own objects when the loader
// restores the snapshot (`loadPyodide({_loadSnapshot})`). The interpreter's memory is written
// as is to SNAPSHOT_FILE (the bundle step compresses it). Files are not part of a snapshot: the
// loader writes the same zip at SYS_PATH before the first import (no unpacking; zipimport's
// index of it is in the snapshot). Prints one JSON line: {"bytes": snapshot size, "bytecode":
// zip size, "ms": time to make}.
import { readFileSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

const [bundleDir, outFile, bytecodeFile, sysPath, ...wheels] = process.argv.slice(2);
if (!bundleDir || !outFile || !bytecodeFile || !sysPath) {
  console.error('usage: node make-snapshot.mjs BUNDLE_DIR SNAPSHOT_FILE BYTECODE_FILE SYS_PATH WHEEL...');
  process.exit(2);
}
// Browser names that Pyodide's own modules import when they are imported (pyodide.http's
// XMLHttpRequest) and Node lacks: a stand-in here makes the snapshot record the name, and the
// page's real object takes its place on restore (without it the page's pyxhr would be broken).
globalThis.XMLHttpRequest ??= class XMLHttpRequest {};
const started = performance.now();
const indexURL = `${bundleDir}/pyodide/`;
const { loadPyodide } = await import(pathToFileURL(`${indexURL}pyodide.mjs`).href);
const py = await loadPyodide({ indexURL, _makeSnapshot: true, packages: [], stdout: () => {}, stderr: () => {} });
const staging = '/tmp/pyauth-web-site';
py.FS.mkdirTree(staging);
for (const wheel of wheels) {
  py.unpackArchive(new Uint8Array(readFileSync(wheel)), 'wheel', { extractDir: staging });
}
py.runPython(`
import compileall, os, py_compile, zipfile
site, target = ${JSON.stringify(staging)}, ${JSON.stringify(sysPath)}
compileall.compile_dir(
    site, quiet=2, legacy=True, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH
)
os.makedirs(os.path.dirname(target), exist_ok=True)
with zipfile.ZipFile(target, 'w', zipfile.ZIP_STORED) as out:
    for root, dirs, files in os.walk(site):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            out.write(path, os.path.relpath(path, site))
`);
const bytecode = py.FS.readFile(sysPath);
writeFileSync(bytecodeFile, bytecode);
py.runPython(`
import sys
sys.path.insert(0, ${JSON.stringify(sysPath)})
import pyauth_web.preload
import pyauth_web.browser.runtime
`);
const snapshot = py.makeMemorySnapshot();
writeFileSync(outFile, snapshot);
console.log(JSON.stringify({
  bytes: snapshot.length, bytecode: bytecode.length,
  ms: Math.round(performance.now() - started),
}));
process.exit(0);  // Pyodide leaves handles open under Node
