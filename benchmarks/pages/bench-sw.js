// Benchmark-only worker: the real sw.js plus a hook that times its own round trip to the page.
// Held time: from the fetch event reaching the worker to the worker's own fetch() of that URL
// (what the worker adds before a request leaves; DPoP vs Bearer). Registered before sw.js's
// listener, so it sees each event first.
const heldSince = new Map();  // request URL -> performance.now() at the fetch event
const held = [];              // [url, ms] of each request the worker sent on
self.addEventListener('fetch', (event) => { heldSince.set(event.request.url, performance.now()); });
const realFetch = self.fetch.bind(self);
self.fetch = (input, init) => {
  const url = input instanceof Request ? input.url : String(input);
  const since = heldSince.get(url);
  if (since !== undefined) {
    heldSince.delete(url);
    held.push([url, performance.now() - since]);
  }
  return realFetch(input, init);
};

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
