// The benchmark's steps for the engines section (bench.py `--only engines`): what a thin driver
// (tests/e2e/engines/drivers.py) calls in the page as `window.scenario[step](...args)`, the same
// way in Chromium, Firefox and WebKit. Loaded first by the bench pages; every wait is bounded.
(() => {
  let first = null;
  let last = null;
  let loads = 0;
  document.addEventListener('load', (e) => {
    if (!(e.target instanceof HTMLImageElement)) return;
    loads += 1;
    last = performance.now();
    if (first === null) first = last;
  }, true);
  const until = async (test, ms, what) => {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      if (await test()) return;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`timed out after ${ms} ms: ${what}`);
  };
  const mark = (name) => performance.getEntriesByName(name)[0];
  window.scenario = {
    signIn(key, value) { localStorage.setItem(key, value); return true; },
    /** Navigation start -> pyauthWeb.ready (the loader's mark). */
    async readyMs() {
      await until(() => window.pyauthWeb && window.pyauthWeb.ready, 30000, 'the loader');
      await pyauthWeb.ready;
      return mark('pyauth-web:ready').startTime;
    },
    /** Navigation start -> a bare loadPyodide() ran Python. */
    async bareMs() {
      await until(() => window.bareReady, 30000, 'the bare page');
      return window.bareReady;
    },
    /** The worker is active and, with the runtime, its snapshot is stored (a later visit next). */
    async settle() {
      await Promise.race([navigator.serviceWorker.ready, new Promise((_, no) => setTimeout(() => no(new Error('no worker in 20 s')), 20000))]);
      if (window.pyauthWeb) await until(() => mark('pyauth-web:snapshot-saved'), 30000, 'the snapshot saved');
      return true;
    },
    async controlled() {
      await until(() => navigator.serviceWorker.controller, 20000, 'the worker in control');
      if (window.pyauthWeb) await pyauthWeb.ready;
      if (window.benchReady) await window.benchReady;
      return true;
    },
    /** Until `n` images have loaded: ms from navigation to the first and to the last load
     *  event (not `complete`, which an engine may set a task before it fires `load`). */
    async images(n, ms) {
      await until(() => loads >= n, ms, `${n} images`);
      return { first, last };
    },
    /** n SW -> page -> SW token round trips, timed inside the worker (bench-sw.js). */
    roundtrips(n, url, app) {
      return new Promise((resolve) => {
        navigator.serviceWorker.addEventListener('message', (e) => {
          if (e.data && e.data.type === 'bench-result') resolve(e.data.times);
        });
        navigator.serviceWorker.controller.postMessage({ type: 'bench-roundtrip', app, n, url });
      });
    },
  };
})();
