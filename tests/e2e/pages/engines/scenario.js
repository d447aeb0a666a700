// The steps of the cross-engine scenarios, run in the page in every engine (Chromium, Firefox,
// WebKit). A driver only opens tabs and calls `window.scenario[step](...args)`; what a step does
// and what it reports is decided here, once, for all engines. Every wait is bounded. No inline
// script: the same file runs under the strict-CSP pages.
(() => {
  const events = [];
  const authErrors = [];
  const unhandled = [];
  const violations = [];
  addEventListener('pyauth-web:event', (e) => events.push(e.detail));
  addEventListener('console:auth-error', (e) => authErrors.push(e.detail));
  addEventListener('unhandledrejection', (e) => unhandled.push(String(e.reason)));
  addEventListener('error', (e) => unhandled.push(`error: ${e.message}`));
  document.addEventListener('securitypolicyviolation', (e) => violations.push(
    `${e.violatedDirective} ${e.blockedURI}`));
  let atLoad = null;  // the host's load event: when, and how many of the HTML's realm images showed
  addEventListener('load', () => {
    const imgs = Array.from(document.querySelectorAll('#realm img'));
    atLoad = { t: performance.now(), shown: imgs.filter((img) => img.naturalWidth > 0).length, of: imgs.length };
  });

  /** A promise that rejects with `what` after `ms`, unless `promise` settles first. */
  const within = (promise, ms, what) => Promise.race([
    promise,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms)),
  ]);
  const until = async (test, ms, what) => {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      if (await test()) return true;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`timed out after ${ms} ms: ${what}`);
  };
  const api = () => until(() => window.pyauthWeb && window.pyauthWeb.ready, 20000, 'the loader')
    .then(() => within(window.pyauthWeb.ready, 25000, 'pyauthWeb.ready'));
  const controlled = () => navigator.serviceWorker.controller ? Promise.resolve() : within(
    new Promise((resolve) => navigator.serviceWorker.addEventListener('controllerchange', resolve, { once: true })),
    10000, 'the worker controlling the page');
  const loadImage = (url) => within(new Promise((resolve) => {
    const img = new Image();
    img.onload = () => resolve(img.naturalWidth > 0);
    img.onerror = () => resolve(false);
    img.src = url;
  }), 10000, `the image ${url}`);
  const idbAll = (name) => new Promise((resolve) => {
    const open = indexedDB.open(name);
    open.onerror = () => resolve([]);
    open.onupgradeneeded = () => open.transaction.abort();  // a database that did not exist stays absent
    open.onsuccess = () => {
      const db = open.result;
      const stores = Array.from(db.objectStoreNames);
      if (!stores.length) { db.close(); resolve([]); return; }
      const tx = db.transaction(stores, 'readonly');
      const found = [];
      for (const store of stores) {
        const req = tx.objectStore(store).getAll();
        req.onsuccess = () => found.push(...req.result.map((value) => ({ store, value })));
      }
      tx.oncomplete = () => { db.close(); resolve(found); };
      tx.onerror = () => { db.close(); resolve(found); };
    };
  });
  const text = (value) => {
    try { return JSON.stringify(value); } catch { return String(value); }
  };

  window.scenario = {
    /** The runtime is ready and the worker controls the page. */
    async ready() {
      await api();
      await controlled();
      return { controlled: !!navigator.serviceWorker.controller, ua: navigator.userAgent };
    },
    /** Sign in the way a host's login page does: the token in localStorage, no runtime. */
    signIn(key, realm, token) {
      localStorage.setItem(key, JSON.stringify({ [realm]: token }));
      return true;
    },
    async mint(realm, ttl) {
      const res = await within(fetch('/token', { method: 'POST', body: JSON.stringify({ realm, ttl }) }), 10000, 'POST /token');
      return (await res.json()).token;
    },
    configure(options) { return within(pyauthWeb.configure(options), 10000, 'configure'); },
    async setToken(realm, token, refreshToken) {
      await within(pyauthWeb.setToken(realm, token, refreshToken ?? null), 10000, 'setToken');
      return true;
    },
    async clearTokens() { await within(pyauthWeb.clearTokens(), 10000, 'clearTokens'); return true; },
    getToken(url) { return within(pyauthWeb.getToken(url), 10000, 'getToken'); },
    /** Until getToken(url) is null (bounded). */
    async tokenGone(url, ms) {
      await until(async () => (await pyauthWeb.getToken(url)) === null, ms, 'no token');
      return true;
    },
    /** Until getToken(url) is neither null nor `old` (bounded); returns it. */
    async newToken(url, old, ms) {
      let token = null;
      await until(async () => {
        token = await pyauthWeb.getToken(url);
        return token !== null && token !== old;
      }, ms, 'a new token');
      return token;
    },
    loadImages(urls) { return Promise.all(urls.map(loadImage)); },
    /** The realm <img> elements of the HTML load (first paint): how many show, within `ms`. */
    async htmlImages(ms) {
      const imgs = Array.from(document.querySelectorAll('#realm img'));
      const shown = () => imgs.filter((img) => img.complete && img.naturalWidth > 0).length;
      try { await until(() => shown() === imgs.length, ms, 'the HTML images'); } catch { /* reported */ }
      return { shown: shown(), of: imgs.length };
    },
    async fetchStatus(url) {
      const res = await within(pyauthWeb.fetch(url), 10000, `fetch ${url}`);
      return res.status;
    },
    /** Every place a string is kept at rest in this origin: localStorage, sessionStorage,
     *  every IndexedDB database and Cache Storage cache. */
    async findAtRest(secret) {
      const places = [];
      for (const [name, area] of [['localStorage', localStorage], ['sessionStorage', sessionStorage]]) {
        for (let i = 0; i < area.length; i++) {
          const key = area.key(i);
          if (String(area.getItem(key)).includes(secret)) places.push(`${name}:${key}`);
        }
      }
      const dbs = indexedDB.databases ? await indexedDB.databases() : [];
      for (const { name } of dbs) {
        for (const { store, value } of await idbAll(name)) {
          if (text(value).includes(secret)) places.push(`indexedDB:${name}/${store}`);
        }
      }
      for (const name of await caches.keys()) {
        const cache = await caches.open(name);
        for (const request of await cache.keys()) {
          const response = await cache.match(request);
          const body = response ? await response.clone().text() : '';
          if (request.url.includes(secret) || body.includes(secret)) places.push(`caches:${name}`);
        }
      }
      return places;
    },
    /** The DPoP keys kept for this origin, and whether each can be exported. */
    async dpopKeys(db, store) {
      const keys = (await idbAll(db)).filter((entry) => entry.store === store);
      const out = [];
      for (const { value } of keys) {
        const key = value.privateKey || value;
        try { await crypto.subtle.exportKey('jwk', key); out.push({ extractable: key.extractable, exported: true }); }
        catch (e) { out.push({ extractable: key.extractable, exported: false, error: e.name }); }
      }
      return out;
    },
    dpopProof(method, url) { return within(pyauthWeb.dpopProof(method, url), 10000, 'dpopProof'); },
    /** SSE over fetch until the event `stopAt` (or a terminal state); the ids seen. */
    stream(url, stopAt, ms) {
      const ids = [];
      const states = [];
      let resyncs = 0;
      let handle;
      return within(new Promise((resolve) => {
        handle = pyauthWeb.stream(url, {
          resync: async () => { resyncs += 1; },
          onEvent: (e) => { ids.push(e.id); if (e.id === stopAt) resolve(); },
          onStateChange: (s) => { states.push(s); if (['expired', 'fatal'].includes(s)) resolve(); },
        });
      }), ms, 'the stream').finally(() => handle && handle.close()).then(() => ({ ids, states, resyncs }));
    },
    /** A rotating WebSocket: open, echo, `rotations` forced expiries (each sends a message
     *  while rotating), then close. */
    async socket(url, rotations) {
      const messages = [];
      const states = [];
      let socket;
      socket = await within(pyauthWeb.socket(url, {
        onMessage: (m) => messages.push(JSON.parse(m)),
        onStateChange: (s) => {
          states.push(s);
          if (s === 'rotating') socket.send(`during-swap-${states.length}`);
        },
      }), 10000, 'the socket');
      await until(() => states.includes('open'), 10000, 'the socket open');
      socket.send('hello');
      await until(() => messages.some((m) => m.echo === 'hello'), 10000, 'the echo');
      for (let n = 1; n <= rotations; n++) {
        socket.send(JSON.stringify({ cmd: 'expire' }));
        await until(() => states.filter((s) => s === 'rotating').length === n
          && states[states.length - 1] === 'open', 15000, `rotation ${n}`);
      }
      socket.close();
      return { states, echoes: messages.filter((m) => m.echo).map((m) => m.echo) };
    },
    /** What Safari's tracking prevention deletes after 7 days without a visit: every
     *  script-writable store of the origin (localStorage, sessionStorage, IndexedDB, Cache
     *  Storage) and its service worker registrations. Reports what could not be deleted. */
    async forgetSite() {
      const left = [];
      for (const reg of await navigator.serviceWorker.getRegistrations()) {
        if (!(await reg.unregister())) left.push(`registration ${reg.scope}`);
      }
      return left.concat(await window.scenario.wipeStorage('all'));
    },
    /** A host's "wipe everything" logout (or storage lost while tabs are open): `storage`
     *  (localStorage and sessionStorage cleared), `database` (every IndexedDB database and
     *  Cache Storage cache of the origin deleted) or `all`. Reports what could not be deleted. */
    async wipeStorage(what) {
      const left = [];
      if (what !== 'database') {
        localStorage.clear();
        sessionStorage.clear();
      }
      if (what === 'storage') return left;
      for (const name of await caches.keys()) await caches.delete(name);
      const dbs = indexedDB.databases ? await indexedDB.databases() : [];
      for (const { name } of dbs) {
        const deleted = await within(new Promise((resolve) => {
          const req = indexedDB.deleteDatabase(name);
          req.onsuccess = () => resolve(true);
          req.onerror = () => resolve(false);
        }), 5000, `deleting the database ${name}`).catch(() => false);
        if (!deleted) left.push(`indexedDB ${name}`);
      }
      return left;
    },
    /** How this document was loaded (`navigate`, `reload`, ...). */
    navigationType() { return performance.getEntriesByType('navigation')[0].type; },
    /** The tab's visibility as the engine reports it. */
    visibility() { return document.visibilityState; },
    /** Until this tab reports `state` (bounded). */
    async becomes(state, ms) {
      await until(() => document.visibilityState === state, ms, `visibilityState ${state}`);
      return true;
    },
    events(kind) { return kind ? events.filter((e) => e.kind === kind) : events; },
    /** Until an auth event of `kind` has been seen (bounded); the first one. */
    async event(kind, ms) {
      await until(() => events.some((e) => e.kind === kind), ms, `a ${kind} event`);
      return events.find((e) => e.kind === kind);
    },
    problems() { return { authErrors, unhandled, violations }; },
    /** How the runtime started: the loader's marks (time and detail) and, for the bundle's files,
     *  the bytes as sent (encoded) and unpacked (decoded), by their path in the bundle. */
    startInfo() {
      const marks = {};
      for (const m of performance.getEntriesByType('mark')) {
        if (m.name.startsWith('pyauth-web:')) marks[m.name.slice(11)] = { t: m.startTime, detail: m.detail };
      }
      const files = {};
      for (const e of performance.getEntriesByType('resource')) {
        const at = e.name.indexOf('/pyauth/');
        if (at >= 0) files[e.name.slice(at + 8)] = { encoded: e.encodedBodySize, decoded: e.decodedBodySize, start: e.startTime };
      }
      return { marks, files };
    },
    /** Once the host's load event has fired (bounded): when, and the realm images shown then. */
    async atLoad(ms) {
      await until(() => atLoad !== null, ms, 'the load event');
      return atLoad;
    },
    /** Whether the page enforces Trusted Types: a plain string into a script URL sink throws. */
    trustedTypesEnforced() {
      try { document.createElement('script').src = '/t/engines/none.js'; return false; } catch { return true; }
    },
  };
})();
