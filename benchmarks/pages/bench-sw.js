// Benchmark-only worker: the real sw.js plus a hook that times its own round trip to the page.
importScripts('/sw.js');

self.addEventListener('message', (event) => {
  const msg = event.data;
  if (!msg || msg.type !== 'bench-roundtrip') return;
  event.waitUntil((async () => {
    const times = [];
    for (let i = 0; i < msg.n; i++) {
      const t0 = performance.now();
      await askPage(msg.app, `${msg.url}${i}`, event.source.id);  // askPage: sw.js's page round trip
      times.push(performance.now() - t0);
    }
    event.source.postMessage({ type: 'bench-result', times });
  })());
});
