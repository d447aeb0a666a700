// pyauth-web: make the Pyodide memory snapshot of a bundle, at bundle time, under Node.
//
//   node make-snapshot.mjs BUNDLE_DIR OUT_FILE WHEEL...
//
// Boots the bundle's own Pyodide in snapshot-making mode, unpacks the wheels the loader installs
// at boot, imports the pure-Python core (pyauth_web.preload: no `js`, no token), and writes the
// interpreter's memory gzip-compressed to OUT_FILE. The loader restores it in the page
// (`loadPyodide({_loadSnapshot})`), where `js` is bound to the page. Prints one JSON line:
// {"bytes": raw size, "stored": compressed size, "ms": time to make}.
import { readFileSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';

const [bundleDir, outFile, ...wheels] = process.argv.slice(2);
if (!bundleDir || !outFile) {
  console.error('usage: node make-snapshot.mjs BUNDLE_DIR OUT_FILE WHEEL...');
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
console.log(JSON.stringify({ bytes: snapshot.length, stored: stored.length, ms: Math.round(performance.now() - started) }));
process.exit(0);  // Pyodide leaves handles open under Node
