// pyauth-web: make the Pyodide memory snapshot of a bundle, at bundle time, under Node.
//
//   node make-snapshot.mjs BUNDLE_DIR SNAPSHOT_FILE BYTECODE_FILE WHEEL...
//
// Boots the bundle's own Pyodide in snapshot-making mode, unpacks the wheels the loader installs
// at boot, imports the pure-Python core (pyauth_web.preload: no `js`, no token), and writes the
// interpreter's memory gzip-compressed to SNAPSHOT_FILE. The loader restores it in the page
// (`loadPyodide({_loadSnapshot})`), where `js` is bound to the page. Then it compiles every
// module of the wheels to bytecode (unchecked hash-based .pyc, PEP 552: valid whatever the
// files' times) and writes the whole site-packages (sources, .pyc, dist-info) to the zip
// BYTECODE_FILE, which the loader unpacks instead of the wheels: one archive, and the modules
// that cannot be in the snapshot (the browser adapter imports `js`) are not compiled in the
// page. Prints one JSON line: {"bytes": raw size, "stored": compressed size, "bytecode": zip
// size, "ms": time to make}.
import { readFileSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';

const [bundleDir, outFile, bytecodeFile, ...wheels] = process.argv.slice(2);
if (!bundleDir || !outFile || !bytecodeFile) {
  console.error('usage: node make-snapshot.mjs BUNDLE_DIR SNAPSHOT_FILE BYTECODE_FILE WHEEL...');
  process.exit(2);
}
const started = performance.now();
const indexURL = `${bundleDir}/pyodide/`;
const { loadPyodide } = await import(pathToFileURL(`${indexURL}pyodide.mjs`).href);
const py = await loadPyodide({ indexURL, _makeSnapshot: true, packages: [], stdout: () => {}, stderr: () => {} });
const sitePackages = py.runPython("import sysconfig; sysconfig.get_path('purelib')");
for (const wheel of wheels) {
  py.unpackArchive(new Uint8Array(readFileSync(wheel)), 'wheel', { extractDir: sitePackages });
}
py.runPython('import pyauth_web.preload');
const snapshot = py.makeMemorySnapshot();
const stored = gzipSync(snapshot, { level: 6 });
writeFileSync(outFile, stored);
py.runPython(`
import compileall, os, py_compile, zipfile
site = ${JSON.stringify(sitePackages)}
compileall.compile_dir(site, quiet=2, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
with zipfile.ZipFile('/tmp/site-packages.zip', 'w', zipfile.ZIP_STORED) as out:
    for root, _dirs, files in os.walk(site):
        for name in files:
            path = os.path.join(root, name)
            out.write(path, os.path.relpath(path, site))
`);
const bytecode = py.FS.readFile('/tmp/site-packages.zip');
writeFileSync(bytecodeFile, bytecode);
console.log(JSON.stringify({
  bytes: snapshot.length, stored: stored.length, bytecode: bytecode.length,
  ms: Math.round(performance.now() - started),
}));
process.exit(0);  // Pyodide leaves handles open under Node
