/* pyauth-web loader: boots Pyodide from this bundle, starts the Python runtime, exposes
 * window.pyauthWeb. Everything is loaded from the folder this script was served from.
 *
 *   <script src="/pyauth/pyauth-web.js" data-sw="/sw.js"
 *           data-realms="https://realm-a.example/ https://realm-b.example/"
 *           data-storage-key="pyauth-web:session"></script>
 *
 * From its first moment the loader tells the worker that this page runs the app named by its
 * storage key (`hello`: the worker serves only such clients), and takes the worker's token
 * requests: for URLs under a configured or stored realm it replies {type:'pending', app} (the
 * worker then waits up to 3 s) and hands the request to Python once it is up; for any other URL
 * it replies {app} at once. It never answers with a token itself.
 */
// @ts-check: `make lint` checks this file with tsc --checkJs.
(() => {
  'use strict';
  const MSG = Object.freeze({
    HELLO: 'hello',
    CLEAR_TOKENS: 'clear-tokens',
    WORKER_TICKET: 'worker-ticket',
    REQUEST_REALM_TOKEN: 'request-realm-token',
    PENDING: 'pending',
    ACK: 'ack',
  });
  const PROTOCOL_VERSION = 3;  // the worker's acks carry its own: a mismatch is warned about once
  const ACK_TIMEOUT_MS = 2000;  // a worker that does not acknowledge a message in time is not waited for
  const RESEND_MS = 400;  // a message a worker has not acknowledged yet is posted to it again (a stopped worker lost it)
  const DEFAULT_STORAGE_KEY = 'pyauth-web:session';
  const EVENT = 'pyauth-web:event';  // the runtime's too (pyauth_web/protocol.py)
  const SNAPSHOT_CACHE = 'pyauth-web-snapshot-v2';  // the memory snapshot's (see readSnapshot)
  const BOOT_SAVES_MS = 2000;  // what restoring the snapshot saves against booting (see snapshotPays)
  const IDLE_TIMEOUT_MS = 2000;  // the longest wait for idle time once the host has loaded

  const script = /** @type {HTMLScriptElement} */ (document.currentScript);
  const base = new URL('.', script.src).href;
  const data = script.dataset;
  const config = {
    base,
    sw: data.sw === undefined ? null : new URL(data.sw, location.href).href,
    swScope: data.swScope ? new URL(data.swScope, location.href).href : null,
    realms: (data.realms || '').split(/\s+/).filter(Boolean),
    dpop: (data.dpop || '').split(/\s+/).filter(Boolean),  // realms whose opaque tokens are DPoP-bound
    storageKey: data.storageKey || DEFAULT_STORAGE_KEY,
    skew: data.skew === undefined ? null : Number(data.skew),  // null: the runtime's default
    refreshURL: data.refreshUrl ? new URL(data.refreshUrl, location.href).href : null,
    // 'auto': restore the bundle's snapshot when the link makes it pay (snapshotPays); 'on': always
    snapshot: data.snapshot === 'off' || data.snapshot === 'on' ? data.snapshot : 'auto',
    // 'idle': start the runtime once the host has loaded and is idle (see hostIdle)
    boot: data.boot === 'idle' ? 'idle' : 'now',
    recover: data.recover !== 'off',
    // 'external': the host runs Pyodide itself and hands it over with pyauthWeb.attach(pyodide)
    pyodide: data.pyodide === 'external' ? 'external' : 'own',
  };
  const app = config.storageKey;  // the worker keeps each app's tokens apart by this name

  // Trusted Types: the loader's only sinks are script URLs (its bundle's scripts, and the worker
  // given to `register`). With Trusted Types enforced they go through one named policy,
  // 'pyauth-web', which yields only URLs inside the bundle (the loader's own directory) and the
  // configured worker URL, and throws for anything else. Pyodide loads its modules with
  // `import()`, which is not a Trusted Types sink.
  const scriptPolicy = (() => {
    const tt = /** @type {any} */ (window).trustedTypes;
    if (!tt || typeof tt.createPolicy !== 'function') return null;
    try {
      return tt.createPolicy('pyauth-web', {
        createScriptURL: (/** @type {string} */ url) => {
          const href = new URL(url, location.href).href;
          if (href.startsWith(base) || (config.sw !== null && href === config.sw)) return href;
          throw new TypeError(`pyauth-web: not a script of this bundle: ${href}`);
        },
      });
    } catch (err) {  // the page's CSP does not allow the policy name
      console.error("pyauth-web: cannot create the Trusted Types policy 'pyauth-web' (add it to the CSP's trusted-types directive):", err);
      return null;
    }
  })();
  /** @param {string} url @returns {any} a TrustedScriptURL where Trusted Types exist */
  const scriptURL = (url) => (scriptPolicy ? scriptPolicy.createScriptURL(url) : url);

  // --- the session record (IndexedDB) ---------------------------------------------------------
  // The app's session (tokens, refresh tokens, the versions that order logouts) as one JSON text
  // per app, changed only in transactions: consistent across tabs and the worker, unlike
  // localStorage (pyauth_web/record.py has the rules; this is only the storage). `update(fn)`
  // runs fn(text) synchronously inside a read-write transaction and stores the text it returns
  // (null: no change); whatever fn writes to localStorage is written inside the transaction.
  const RECORD_DB = 'pyauth-web-session';
  const RECORD_STORE = 'records';
  const RECORD_CHANNEL = 'pyauth-web/session';  // notices that a session ended (pages and the worker)
  /** @type {Promise<IDBDatabase> | null} */
  let recordDB = null;
  /** @type {Array<() => void>} */
  const recordDeleted = [];  // told when another tab (or the browser) deletes the database
  function openRecords() {
    if (!recordDB) {
      recordDB = new Promise((resolve, reject) => {
        // (The runtime keeps the record in memory when this error comes: its name says why.)
        const unavailable = (/** @type {unknown} */ why) => {
          const err = new Error(`pyauth-web: the session database cannot be opened: ${why}`);
          err.name = 'SessionRecordUnavailable';
          return err;
        };
        let open;
        try { open = indexedDB.open(RECORD_DB, 1); } catch (err) { reject(unavailable(err)); return; }
        let blocked = false;
        open.onupgradeneeded = () => { open.result.createObjectStore(RECORD_STORE); };
        open.onerror = () => reject(unavailable(open.error));
        open.onblocked = () => { blocked = true; reject(unavailable('blocked by another connection')); };
        open.onsuccess = () => {
          const db = open.result;
          if (blocked) { db.close(); return; }  // given up on already
          db.onversionchange = (event) => {
            db.close();
            recordDB = null;
            if (event.newVersion === null) for (const told of recordDeleted) told();  // deleted
          };
          db.onclose = () => { recordDB = null; };
          resolve(db);
        };
      });
      recordDB.catch(() => { recordDB = null; });
    }
    return recordDB;
  }
  // No timer bounds a transaction (a page's timers can be made to jump): it ends by itself, as
  // IndexedDB transactions do (committed once nothing more is asked of it, or aborted), and an
  // open that another connection blocks fails at once.
  /** @param {IDBTransactionMode} mode @param {(store: IDBObjectStore, tx: IDBTransaction) => (() => any)} run */
  function recordTransaction(mode, run) {
    return openRecords().then((db) => new Promise((resolve, reject) => {
      const tx = db.transaction(RECORD_STORE, mode);
      const result = run(tx.objectStore(RECORD_STORE), tx);
      tx.oncomplete = () => resolve(result());
      tx.onabort = () => reject(tx.error || new Error('pyauth-web: session record transaction aborted'));
    }));
  }
  const records = {
    /** @param {() => void} fn called when the database is deleted while open here */
    onDeleted: (fn) => { recordDeleted.push(fn); },
    /** @returns {Promise<string | null>} the app's record (JSON text) as committed now */
    read: () => recordTransaction('readonly', (st) => {
      const req = st.get(app);
      return () => (typeof req.result === 'string' ? req.result : null);
    }),
    /** @param {(text: string | null) => (string | null | undefined)} fn */
    update: (fn) => recordTransaction('readwrite', (st, tx) => {
      const req = st.get(app);
      req.onsuccess = () => {
        let next;
        try { next = fn(typeof req.result === 'string' ? req.result : null); } catch { tx.abort(); return; }
        if (typeof next === 'string') st.put(next, app);
      };
      return () => undefined;
    }),
  };

  // --- the bundle: what needs no other step is requested first -------------------------------
  // pyodide.js, the manifest, the prebuilt zip and the cached snapshot, before the worker is
  // registered or told anything: a warm start waits on them, and nothing else waits on the
  // worker's set-up. With data-boot="idle" all of it waits for the host's load and idle time.
  let deferred = config.boot === 'idle';  // the runtime has not begun to start (data-boot="idle")
  const started = (deferred ? hostIdle() : Promise.resolve()).then(() => {
    deferred = false;
    performance.mark('pyauth-web:start');
    const external = config.pyodide === 'external';
    const useSnapshot = !external && config.snapshot !== 'off' && 'caches' in globalThis && 'DecompressionStream' in globalThis;
    const scriptLoaded = external ? Promise.resolve() : loadScript('pyodide/pyodide.js');
    const manifest = fetchAsset('manifest.json').then((r) => r.json());
    // The wheels, installed and compiled to bytecode at bundle time (one zip), else the wheels.
    const wheelBytes = manifest.then((m) => {
      const prebuilt = m.snapshot ? [m.snapshot.bytecode] : m.wheels.filter((w) => m.install.includes(w.name)).map((w) => `wheels/${w.file}`);
      return prebuilt.map((path) => fetchAsset(path).then((r) => r.arrayBuffer()));
    });
    for (const p of [scriptLoaded, manifest, wheelBytes]) p.catch(() => {});  // each surfaces where it is awaited
    const cached = useSnapshot ? readSnapshot() : Promise.resolve(null);
    // The app's session record (IndexedDB), read while Pyodide loads: the runtime starts from it.
    const record = records.read().catch(() => null);
    return { external, useSnapshot, scriptLoaded, manifest, wheelBytes, cached, record };
  });

  // data-boot="idle": the host's `load` event, then idle time (at most IDLE_TIMEOUT_MS later;
  // Safari has no requestIdleCallback: the next task).
  function hostIdle() {
    return new Promise((resolve) => {
      const idle = () => ('requestIdleCallback' in window
        ? requestIdleCallback(() => resolve(undefined), { timeout: IDLE_TIMEOUT_MS })
        : setTimeout(resolve, 0));
      if (document.readyState === 'complete') idle();
      else window.addEventListener('load', idle, { once: true });
    });
  }

  // --- service-worker requests, from the first moment ---------------------------------------
  let runtime = null;   // the Python runtime (a PyProxy), once ready
  const early = [];     // requests that arrived while Python was booting

  // A realm's canonical form: the browser's URL serialisation of an http(s) URL without
  // credentials, query or fragment, ending in '/' (the rule of pyauth_web/realms.py); null if
  // the text is not a usable realm. Request URLs are canonical too: matching is a prefix test.
  function canonicalRealm(text) {
    try {
      const u = new URL(text);
      const ok = (u.protocol === 'http:' || u.protocol === 'https:') && u.username === ''
        && u.password === '' && u.search === '' && u.hash === '' && u.href.endsWith('/');
      return ok ? u.href : null;
    } catch { return null; }
  }

  function candidateRealms() {
    const realms = [...config.realms];
    try {
      const stored = JSON.parse(localStorage.getItem(config.storageKey) || '{}');
      if (stored && typeof stored === 'object') realms.push(...Object.keys(stored));
    } catch { /* a corrupt value is Python's to report */ }
    return realms.map(canonicalRealm).filter((realm) => realm !== null);
  }

  let bootFailed = false;
  /** @type {Promise<unknown> | null} */
  let helloApplied = null;  // data-boot="idle": this page's hello, acknowledged by the worker

  function onWorkerMessage(event) {
    if (event.data && event.data.type === MSG.ACK) {
      if (event.source) ackedBy.add(event.source);
      acknowledged(event.data.ack, event.data.v, event.source);
      return;
    }
    if (runtime) { runtime.handle_sw_message(event.data, event.ports[0]); return; }
    const msg = event.data;
    const port = event.ports[0];
    if (!port || !msg || msg.type !== MSG.REQUEST_REALM_TOKEN || typeof msg.requestURL !== 'string') return;
    // Before a deferred start (data-boot="idle") nothing answers soon: the answer is "no token",
    // at once (the host's load event would wait for it), once the worker has applied this page's
    // hello (its fingerprint of storage: the worker's own saved token is used only if it matches),
    // so the worker serves what it holds; a miss goes without a token and the recovery
    // re-requests it later.
    if (deferred) {
      if (!helloApplied) helloApplied = postToWorker(hello());
      helloApplied.then(() => port.postMessage({ app }));
      return;
    }
    if (bootFailed || !candidateRealms().some((realm) => msg.requestURL.startsWith(realm))) {
      port.postMessage({ app });
      return;
    }
    port.postMessage({ type: MSG.PENDING, app });
    early.push(event);
  }

  // A fingerprint of the stored session, sent with every message: the worker drops its copy of
  // the app's tokens when a page's storage says otherwise (the host wrote it on a page without
  // the runtime). A change detector, not a secret and not an integrity check.
  function fingerprint() {
    let raw;
    try { raw = localStorage.getItem(config.storageKey); } catch { return 'unreadable'; }
    if (raw === null) return 'none';
    let h1 = 0x811c9dc5;
    let h2 = 0x01000193 ^ raw.length;
    for (let i = 0; i < raw.length; i++) {
      const c = raw.charCodeAt(i);
      h1 = Math.imul(h1 ^ c, 16777619);
      h2 = Math.imul(h2 ^ c, 2246822519);
    }
    return `${raw.length}:${(h1 >>> 0).toString(16)}:${(h2 >>> 0).toString(16)}`;
  }

  const sw = 'serviceWorker' in navigator ? navigator.serviceWorker : null;
  // `realms`: the realms this page may hold a token for (configured, or in storage, which the
  // host may have written on a page without the runtime): the worker asks this page for their
  // origins from the first paint, before the runtime has told it anything.
  const hello = () => ({ type: MSG.HELLO, app, fp: fingerprint(), v: PROTOCOL_VERSION, realms: candidateRealms() });
  // The registration to message: the one data-sw registers (whatever the page's scope), else
  // whichever covers this page now (the host registers it itself). Never waited for unbounded.
  let registered = null;
  if (sw) {
    sw.addEventListener('message', onWorkerMessage);
    sw.startMessages();
    if (sw.controller) sw.controller.postMessage(hello());  // before the page's first request, if we can
    sw.addEventListener('controllerchange', () => { if (sw.controller) sw.controller.postMessage(hello()); });
    if (config.sw !== null) {
      registered = sw.register(scriptURL(config.sw), config.swScope ? { scope: config.swScope } : undefined)
        .catch((err) => { console.error('pyauth-web: service worker registration failed:', err); return null; });
    }
  }
  // --- first-visit recovery ------------------------------------------------------------------
  // Requests made before the worker controls the page (a first visit, Shift+Reload) go out
  // without the header and fail; so do those of a controlled page whose runtime took longer
  // than the worker's budget (3 s) to answer (a slow machine, a host's own Pyodide). From its
  // first moment the loader notes <img> elements (also with srcset, or inside <picture>) whose
  // realm URL failed; once the worker controls the page and the runtime can answer, it
  // re-requests each of them once, through the worker. Images still loading then are watched
  // until they settle. Other URLs are never touched; nothing is re-requested twice;
  // `data-recover="off"` turns it off. CSS background images are not recovered (no error event
  // tells that they failed).
  const recovery = (() => {
    if (!sw || !config.recover) return null;
    /** @type {Set<HTMLImageElement>} */
    const failed = new Set();
    /** @type {WeakSet<HTMLImageElement>} */
    const retried = new WeakSet();
    /** @type {Set<HTMLImageElement> | null} */
    let watching = null;  // after the recovery: images that were still loading
    let realms = /** @type {string[]} */ ([]);
    const isRealmURL = (/** @type {string} */ url) => realms.some((realm) => url.startsWith(realm));
    const retry = (/** @type {HTMLImageElement} */ img) => {
      if (retried.has(img) || !isRealmURL(img.currentSrc || img.src)) return false;
      retried.add(img);
      const attr = img.hasAttribute('src') ? 'src' : 'srcset';  // setting it re-runs source selection
      img.setAttribute(attr, img.getAttribute(attr) || '');
      return true;
    };
    const onError = (/** @type {Event} */ event) => {
      const img = event.target;
      if (!(img instanceof HTMLImageElement)) return;
      if (watching === null) failed.add(img);
      else if (watching.delete(img)) retry(img);
    };
    const onLoad = (/** @type {Event} */ event) => {
      if (watching && event.target instanceof HTMLImageElement) watching.delete(event.target);
    };
    // Resource events do not bubble, and a 'load' event never reaches window: capture on document.
    document.addEventListener('error', onError, true);
    document.addEventListener('load', onLoad, true);
    return {
      // The worker controls the page and the runtime answers: re-request what failed.
      run() {
        if (watching !== null) return 0;
        realms = candidateRealms();
        for (const img of Array.from(document.images)) {  // also those that failed before this script ran
          if (img.complete && img.naturalWidth === 0 && (img.currentSrc || img.src)) failed.add(img);
        }
        watching = new Set(Array.from(document.images).filter((img) => !img.complete && isRealmURL(img.currentSrc || img.src)));
        let count = 0;
        for (const img of failed) if (retry(img)) count++;
        failed.clear();
        window.dispatchEvent(new CustomEvent(EVENT, { detail: { kind: 'recovered', count } }));
        return count;
      },
    };
  })();

  /** @param {Promise<any>} promise @param {number} ms */
  function within(promise, ms) {  // the promise's value, or null after ms (no timer left behind)
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    let timer;
    const late = new Promise((resolve) => { timer = setTimeout(() => resolve(null), ms); });
    return Promise.race([promise, late]).finally(() => clearTimeout(timer));
  }
  function currentRegistration() {
    if (!sw) return Promise.resolve(null);
    const existing = sw.getRegistration(config.swScope || undefined).then((reg) => reg || null, () => null);
    if (!registered) return within(existing, ACK_TIMEOUT_MS);
    // register() may wait for the browser's update check (a slow or held sw.js): the
    // registration that exists already takes the message meanwhile (a logout must not wait).
    const first = new Promise((resolve) => {
      let left = 2;
      for (const p of [registered, existing]) {
        p.then((reg) => { if (reg) resolve(reg); else if (--left === 0) resolve(null); });
      }
    });
    return within(first, ACK_TIMEOUT_MS);
  }

  // Every message goes to every worker of the registration (active, waiting, installing): a
  // worker being deployed must not miss a logout. Each acknowledges once it has applied and
  // saved the message; `flush()` waits (bounded) for the acknowledgements sent so far.
  const outstanding = new Set();
  const waitingAcks = new Map();  // ack id -> called with each worker that acknowledged it
  let ackCount = 0;
  // Version skew (a deploy between this page's load and the worker's): a worker that acks with
  // another protocol version, or does not ack in time (older workers never did), makes the page
  // warn once and ask the browser once to update the registration. The page never reloads itself.
  let versionWarned = false;
  let silenceWarned = false;
  const ackedBy = new WeakSet();  // workers that acknowledged a message: they speak a version
  /** @param {ServiceWorker[]} workers a message went to; not all of them acknowledged it in time */
  function unacknowledged(workers) {
    if (!silenceWarned && workers.some((w) => !ackedBy.has(w))) {
      silenceWarned = true;
      console.warn(`pyauth-web: the service worker did not acknowledge within ${ACK_TIMEOUT_MS} ms (protocol 1 workers never do, or it is stalled), this page speaks protocol ${PROTOCOL_VERSION}: deploy sw.js and pyauth-web.js from the same bundle`);
    }
    askForUpdate();
  }
  let updateAsked = false;
  function askForUpdate() {
    if (updateAsked) return;
    updateAsked = true;
    currentRegistration().then((reg) => reg && reg.update()).catch(() => {});
  }
  function acknowledged(id, version, worker) {
    if (version !== PROTOCOL_VERSION && !versionWarned) {
      versionWarned = true;
      console.warn(`pyauth-web: the service worker speaks protocol ${version}, this page ${PROTOCOL_VERSION}: deploy sw.js and pyauth-web.js from the same bundle`);
      askForUpdate();
    }
    const waiter = waitingAcks.get(id);
    if (waiter) waiter(worker);
  }
  // A message goes to every worker of the registration, and is posted again (every RESEND_MS,
  // within ACK_TIMEOUT_MS in all) to each that has not acknowledged it: a worker stopped while it
  // handled it (the browser stops idle workers) lost it. Once all have acknowledged, a worker that
  // appeared meanwhile (a deploy being installed) gets it too.
  function postToWorker(message) {
    const fp = fingerprint();  // storage as it is now, when the runtime posts
    const sent = currentRegistration().then((reg) => {
      if (!reg) return undefined;
      const id = `${app}#${++ackCount}`;
      const msg = { ...message, app, fp, ack: id, v: PROTOCOL_VERSION };
      /** @type {Set<ServiceWorker>} */
      const told = new Set();
      /** @type {Set<ServiceWorker>} */
      const left = new Set();  // told, not acknowledged yet
      return new Promise((resolve) => {
        /** @type {ReturnType<typeof setInterval> | undefined} */
        let resend;
        const deadline = setTimeout(() => finish(true), ACK_TIMEOUT_MS);
        function finish(/** @type {boolean} */ late) {
          clearTimeout(deadline);
          clearInterval(resend);
          waitingAcks.delete(id);
          if (late && left.size > 0) unacknowledged([...left]);
          resolve(undefined);
        }
        function tell() {
          for (const worker of [reg.installing, reg.waiting, reg.active]) {
            if (worker && !told.has(worker)) { told.add(worker); left.add(worker); worker.postMessage(msg); }
          }
          if (left.size === 0) finish(false);
        }
        waitingAcks.set(id, (/** @type {ServiceWorker} */ worker) => {
          if (left.delete(worker) && left.size === 0) tell();
        });
        resend = setInterval(() => {
          for (const worker of left) {
            if (worker.state === 'redundant') left.delete(worker);  // replaced: it serves nothing
            else worker.postMessage(msg);
          }
          if (left.size === 0) tell();
        }, RESEND_MS);
        tell();
      });
    });
    outstanding.add(sent);
    sent.finally(() => outstanding.delete(sent));
    return sent;
  }
  function flush() {
    return Promise.all([...outstanding]).then(() => undefined);
  }
  postToWorker(hello());

  // --- DPoP keys (RFC 9449) -------------------------------------------------------------------
  // One P-256 key pair per app, made with WebCrypto as non-extractable and kept in IndexedDB
  // (a CryptoKey is stored by structured clone: the private key never exists as bytes this or
  // any other script can read). Every tab of the app and the service worker use the same key;
  // `clearTokens()` deletes it and the next sign-in makes a new one. Python (the runtime) signs
  // with it; sw/sw.js reads it from the same database. Record: {privateKey, jwk, created}.
  const DPOP_DB = 'pyauth-web-dpop';
  const DPOP_STORE = 'keys';
  /** @param {IDBTransactionMode} mode @param {(store: IDBObjectStore) => IDBRequest} op */
  function keyStore(mode, op) {
    return new Promise((resolve, reject) => {
      const open = indexedDB.open(DPOP_DB, 1);
      open.onupgradeneeded = () => { open.result.createObjectStore(DPOP_STORE); };
      open.onerror = () => reject(open.error);
      open.onsuccess = () => {
        const db = open.result;
        let req;
        try { req = op(db.transaction(DPOP_STORE, mode).objectStore(DPOP_STORE)); } catch (err) { db.close(); reject(err); return; }
        req.onsuccess = () => { db.close(); resolve(req.result); };
        req.onerror = (ev) => { ev.preventDefault(); db.close(); reject(req.error); };
      };
    });
  }
  const dpopKeys = {
    /** @returns {Promise<any>} the app's key record, or null */
    load: () => keyStore('readonly', (st) => st.get(app)).then((r) => r || null),
    /** The app's key record, made now if there is none (two tabs at once: the first one stored wins). */
    async create() {
      const existing = await dpopKeys.load();
      if (existing) return existing;
      const pair = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify']);
      const jwk = await crypto.subtle.exportKey('jwk', pair.publicKey);
      const record = { privateKey: pair.privateKey, jwk: { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y }, created: Date.now() };
      try { await keyStore('readwrite', (st) => st.add(record, app)); } catch { /* another tab's won */ }
      return dpopKeys.load();
    },
    remove: () => keyStore('readwrite', (st) => st.delete(app)).then(() => undefined),
  };

  // --- Python errors become plain JS errors with a one-line message ------------------------
  function plainError(err) {
    if (err && err.constructor && err.constructor.name === 'PythonError') {
      const lines = String(err.message).trim().split('\n');
      const e = new Error(lines[lines.length - 1]);
      e.name = err.type || 'PythonError';
      return e;
    }
    return err;
  }
  async function call(fn) {
    await ready;
    try { return await fn(runtime); } catch (err) { throw plainError(err); }
  }

  // If the runtime could not start, fetch still works, unauthenticated (the server's 401 is
  // the host's to handle), rather than failing every request of the page.
  function authFetch(input, init, fetchFn) {
    return ready.then(
      () => call((rt) => rt.fetch(input, init, fetchFn)),
      () => (fetchFn || fetch)(input, init),
    );
  }

  // --- boot -----------------------------------------------------------------------------------
  async function fetchAsset(path) {
    const url = base + path;
    const resp = await fetch(url).catch((err) => { throw new Error(`pyauth-web: cannot load ${url}: ${err}`); });
    if (!resp.ok) throw new Error(`pyauth-web: missing bundle asset ${url} (HTTP ${resp.status})`);
    return resp;
  }

  function loadScript(path) {
    return new Promise((resolve, reject) => {
      const el = document.createElement('script');
      el.src = scriptURL(base + path);
      el.onload = resolve;
      el.onerror = () => reject(new Error(`pyauth-web: missing bundle asset ${el.src}`));
      document.head.appendChild(el);
    });
  }

  // Memory snapshot (Pyodide's _makeSnapshot/_loadSnapshot): the interpreter's memory with the
  // runtime already imported (no token read yet). The bundle ships one made at bundle time under
  // Node, with the browser adapter imported too (its `js` names are bound to this page's objects
  // on restore), gzip-compressed (manifest.snapshot, ~7 MB); without it, the first visit makes
  // one in the page, of the pure-Python core only. It is kept in Cache Storage uncompressed
  // (~31 MB), keyed by the bundle's Pyodide and wheels: reading it back is ~40 ms, against
  // ~160 ms to read and unpack a compressed copy (README, Performance). Restoring it is several
  // times faster than booting.

  /** @param {ArrayBuffer} buf @returns {Promise<Uint8Array>} */
  async function gunzip(buf) {
    const bytes = new Uint8Array(buf);
    if (bytes[0] !== 0x1f || bytes[1] !== 0x8b) return bytes;  // the server unpacked it already
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }

  /** @returns {Promise<{key: string, bytes: ArrayBuffer} | null>} the cached snapshot (there is
   *  one, of the bundle version that stored it last; the caller checks its key) */
  async function readSnapshot() {
    try {
      const cache = await caches.open(SNAPSHOT_CACHE);
      const [request] = await cache.keys();
      const resp = request ? await cache.match(request) : undefined;
      return resp ? { key: request.url, bytes: await resp.arrayBuffer() } : null;
    } catch { return null; }
  }

  /** @param {string} key @param {Uint8Array} bytes */
  async function saveSnapshot(key, bytes) {
    try {
      await caches.delete('pyauth-web-snapshot-v1');  // an older bundle's uncompressed copy
      const cache = await caches.open(SNAPSHOT_CACHE);
      for (const old of await cache.keys()) await cache.delete(old);  // one bundle version
      await cache.put(key, new Response(/** @type {BlobPart} */ (bytes), { headers: { 'Content-Type': 'application/octet-stream' } }));
      performance.mark('pyauth-web:snapshot-saved');
    } catch (err) { console.warn('pyauth-web: could not save the memory snapshot:', err); }
  }

  // An existing Pyodide (data-pyodide="external"): the host's own interpreter, handed over with
  // pyauthWeb.attach(pyodide). Until then the loader answers the worker 'pending', as while it
  // boots; the runtime then runs in that interpreter (no second one in the tab).
  /** @type {(pyodide: any) => void} */
  let handOver = () => {};
  const attached = new Promise((resolve) => { handOver = resolve; });
  let attachCalled = false;
  function attach(pyodide) {
    if (config.pyodide !== 'external') {
      return Promise.reject(new Error('pyauth-web: attach() needs data-pyodide="external" on the script tag'));
    }
    if (attachCalled) return Promise.reject(new Error('pyauth-web: attach() was called already'));
    attachCalled = true;
    handOver(pyodide);
    return ready;
  }

  /** @param {any} manifest @param {(py: any) => Promise<void>} install */
  async function attachedPyodide(manifest, install) {
    const pyodide = await attached;
    if (!pyodide || typeof pyodide.runPython !== 'function' || typeof pyodide.unpackArchive !== 'function') {
      throw new Error('pyauth-web: attach(pyodide) needs the object loadPyodide() resolved with');
    }
    if (pyodide.version !== manifest.pyodide) {
      throw new Error(`pyauth-web: attach(): this Pyodide is ${pyodide.version}, the bundle needs ${manifest.pyodide} (load it from the bundle's pyodide/ folder)`);
    }
    performance.mark('pyauth-web:pyodide-loaded');
    await install(pyodide);
    return pyodide;
  }

  async function boot() {
    const { external, useSnapshot, scriptLoaded, cached, wheelBytes: fetching } = await started;
    const manifest = await started.then((s) => s.manifest);
    const wheelBytes = await fetching;
    const prebuilt = manifest.snapshot ? manifest.snapshot.bytecode : null;
    const snapshotKey = `${base}__snapshot/${manifest.snapshotKey}`;
    const shipped = useSnapshot && manifest.snapshot ? manifest.snapshot : null;
    const options = { indexURL: `${base}pyodide/`, packages: [] };
    // Files are not part of a snapshot: every start installs them. The prebuilt zip is written
    // where the bundle's snapshot imported the runtime from and put first on sys.path (already
    // there after a restore; zipimport reads it in place); the wheels are unpacked.
    const install = async (py) => {
      if (prebuilt) {
        const path = manifest.snapshot.sysPath;
        py.FS.mkdirTree(path.slice(0, path.lastIndexOf('/')));
        py.FS.writeFile(path, new Uint8Array(await wheelBytes[0]));
        py.runPython(`import sys, importlib\nif ${JSON.stringify(path)} not in sys.path:\n    sys.path.insert(0, ${JSON.stringify(path)}); importlib.invalidate_caches()`);
        return;
      }
      const sitePackages = py.runPython("import sysconfig; sysconfig.get_path('purelib')");
      for (const bytes of wheelBytes) py.unpackArchive((await bytes).slice(0), 'wheel', { extractDir: sitePackages });
    };
    let pyodide;
    if (external) pyodide = await attachedPyodide(manifest, install);
    else {
      // Where this start comes from: the snapshot a visit kept in Cache Storage; the bundle's
      // (a first visit on a link fast enough, see snapshotPays); a boot (then the bundle's
      // snapshot is fetched in idle time for the next visit); or, when the bundle has none, one
      // made here.
      const hit = await cached;
      let from = 'boot';
      let source = null;
      if (hit && hit.key === snapshotKey) {
        from = 'cache';
        source = gunzip(hit.bytes);
      } else if (shipped) {
        const choice = await snapshotPays(manifest, wheelBytes[0]);
        performance.mark('pyauth-web:choice', { detail: choice });
        if (choice.restore) {
          from = 'bundle';
          source = fetchShipped(shipped, 'high').then((bytes) => {
            saveSnapshot(snapshotKey, bytes);
            performance.mark('pyauth-web:snapshot-fetched');
            return bytes;
          });
        } else {
          ready.then(() => hostIdle()).then(() => fetchShipped(shipped, 'low'))
            .then((bytes) => saveSnapshot(snapshotKey, bytes), () => {});
        }
      } else if (useSnapshot) from = 'made';
      if (source) source.catch(() => {});  // surfaces in ownPyodide
      pyodide = await ownPyodide(options, install, from, source, snapshotKey, scriptLoaded);
    }
    performance.mark('pyauth-web:wheels-installed');
    await yieldToHost();
    const mod = pyodide.pyimport('pyauth_web.browser.runtime');
    performance.mark('pyauth-web:runtime-imported');
    await yieldToHost();
    runtime = mod.start(config, postToWorker, dpopKeys, records, await within(started.then((s) => s.record), ACK_TIMEOUT_MS));
    api.pyodide = pyodide;
    mod.destroy();
    for (const event of early.splice(0)) runtime.handle_sw_message(event.data, event.ports[0]);
    if (sw) sw.addEventListener('controllerchange', () => runtime.sync_worker());
    if (recovery && sw) {
      // Re-request once the worker has applied this page's hello (it then knows which app the
      // page runs): a re-request that overtook the hello could be left alone by the worker.
      const recover = () => postToWorker(hello()).then(() => recovery.run());
      if (sw.controller) recover();
      else sw.addEventListener('controllerchange', recover, { once: true });
    }
    performance.mark('pyauth-web:ready');
    return api;
  }

  // Start-up runs in steps (Pyodide's restore or boot, installing the zip, importing, starting):
  // between them the host's own tasks (input, timers, rendering) run; each step is a task of its
  // own, not one long task (README, Performance: the host's main thread).
  function yieldToHost() {
    const scheduler = /** @type {any} */ (globalThis).scheduler;
    return scheduler && typeof scheduler.yield === 'function' ? scheduler.yield()
      : new Promise((resolve) => setTimeout(resolve, 0));
  }

  // Bytes or CPU, on a first visit. Restoring the bundle's snapshot saves booting Pyodide (about
  // BOOT_SAVES_MS of CPU here) but costs its download: worth it when the link brings the
  // snapshot in less time than that (above ~21 Mbit/s with brotli, ~28 with gzip). The link is
  // timed on the prebuilt zip, fetched first and needed either way (Resource Timing: its encoded
  // size over the time its body took); its size also tells which encoding the host sends (one of
  // the manifest's sizes), hence which size of the snapshot would come. navigator.connection's
  // saveData or a 2g/3g effectiveType boot at once; no timing entry (a cross-origin bundle
  // without Timing-Allow-Origin) restores. data-snapshot="on" always restores.
  /** @param {any} manifest @param {Promise<ArrayBuffer>} zipFetched */
  async function snapshotPays(manifest, zipFetched) {
    if (config.snapshot === 'on') return { restore: true, why: 'data-snapshot="on"' };
    const connection = /** @type {any} */ (navigator).connection;
    if (connection && (connection.saveData || /^(slow-2g|2g|3g)$/.test(connection.effectiveType))) {
      return { restore: false, why: `navigator.connection: ${connection.saveData ? 'saveData' : connection.effectiveType}` };
    }
    await zipFetched.catch(() => null);
    const url = base + manifest.snapshot.bytecode;
    let entry = null;
    for (let i = 0; i < 3 && !entry; i++) {  // the entry is added as the body ends: a task or so after
      entry = /** @type {PerformanceResourceTiming | undefined} */ (performance.getEntriesByName(url, 'resource').pop());
      if (!entry) await new Promise((resolve) => setTimeout(resolve, 0));
    }
    if (!entry || !entry.encodedBodySize) return { restore: true, why: 'no timing of the zip' };
    const sizes = manifest.sizes || {};
    const zip = sizes[manifest.snapshot.bytecode] || {};
    const encoding = ['br', 'gzip', 'identity'].find((e) => zip[e] === entry.encodedBodySize) || 'identity';
    const snapshot = (sizes[manifest.snapshot.plain] || {})[encoding] || manifest.snapshot.stored;
    const perMs = entry.encodedBodySize / Math.max(entry.responseEnd - entry.responseStart, 1);
    const downloadMs = Math.round(snapshot / perMs);
    return { restore: downloadMs < BOOT_SAVES_MS, why: 'link', encoding, downloadMs, bytesPerMs: Math.round(perMs) };
  }

  // The bundle's snapshot: the plain file, which a host serving the bundle's precompressed
  // siblings sends compressed (brotli or gzip; the browser unpacks it on the way, off the page's
  // thread); from a host that sends it as it is (Content-Length: the whole 31 MB) the request is
  // dropped at its headers, for the gzip copy, unpacked here.
  /** @param {any} snapshot @param {'high' | 'low'} priority @returns {Promise<Uint8Array>} */
  async function fetchShipped(snapshot, priority) {
    const init = /** @type {RequestInit} */ ({ priority });
    if (snapshot.plain) {
      const abort = new AbortController();
      const resp = await fetch(base + snapshot.plain, { ...init, signal: abort.signal }).catch(() => null);
      if (resp && resp.ok) {
        const length = Number(resp.headers.get('Content-Length'));
        if (resp.headers.get('Content-Encoding') || (length > 0 && length < snapshot.bytes)) {
          return new Uint8Array(await resp.arrayBuffer());
        }
        abort.abort();
      }
    }
    const compressed = await fetch(base + snapshot.file, init).then((r) => {
      if (!r.ok) throw new Error(`pyauth-web: missing bundle asset ${r.url} (HTTP ${r.status})`);
      return r.arrayBuffer();
    });
    return gunzip(compressed);
  }

  // This page's own interpreter: restored from a snapshot (`source`, its bytes), else booted
  // (`from` 'boot'), or booted from a snapshot made here first (`from` 'made').
  /** @param {any} options @param {(py: any) => Promise<void>} install @param {string} from
   *  @param {Promise<Uint8Array> | null} source @param {string} snapshotKey @param {Promise<any>} scriptLoaded */
  async function ownPyodide(options, install, from, source, snapshotKey, scriptLoaded) {
    await scriptLoaded;
    performance.mark('pyauth-web:pyodide-script');
    /** @type {Promise<Uint8Array> | Uint8Array | null} */
    let snapshot = source;
    if (from === 'made') {
      // An interpreter in snapshot-making mode cannot reach the page (its `js` is a stand-in),
      // so it only imports the core; the runtime then starts from the snapshot it made.
      const maker = await globalThis.loadPyodide({ ...options, _makeSnapshot: true });
      await install(maker);
      maker.runPython('import pyauth_web.preload');
      snapshot = maker.makeMemorySnapshot();
      saveSnapshot(snapshotKey, /** @type {Uint8Array} */ (snapshot));
      performance.mark('pyauth-web:snapshot-made');
    }
    let pyodide;
    try {
      pyodide = await globalThis.loadPyodide(snapshot ? { ...options, _loadSnapshot: snapshot } : options);
    } catch (err) {  // a snapshot that does not restore: drop it and boot
      if (!snapshot) throw err;
      console.warn('pyauth-web: the memory snapshot did not restore; booting without it:', err);
      caches.delete(SNAPSHOT_CACHE).catch(() => {});
      pyodide = await globalThis.loadPyodide(options);
    }
    performance.mark('pyauth-web:pyodide-loaded', { detail: { from } });
    await yieldToHost();
    await install(pyodide);
    return pyodide;
  }

  // Logout must work even when the runtime could not start: the same logout in the session record
  // (pyauth_web/record.py, SessionRecord.logout: the session emptied, `cleared` = the new version,
  // so nothing read before it counts anywhere), this app's storage cleared inside that transaction
  // (the refresh tokens an older bundle kept beside it too), then every tab and worker told.
  function clearWithoutRuntime() {
    let version = 0;
    const logout = (/** @type {string | null} */ text) => {
      let record = {};
      try { record = JSON.parse(text || '{}') || {}; } catch { /* unreadable: start afresh */ }
      if (typeof record !== 'object' || Array.isArray(record)) record = {};
      const before = Number.isSafeInteger(record.version) && record.version >= 0 ? record.version : 0;
      version = Math.max(before + 1, Date.now());  // the record's versions follow the clock
      localStorage.removeItem(config.storageKey);
      localStorage.removeItem(`${config.storageKey}:refresh`);
      return JSON.stringify({ ...record, version, cleared: version, since: {}, tokens: {}, refresh: {}, emptied: Date.now() });
    };
    const recorded = records.update(logout).catch(() => { logout(null); });  // no database: storage at least
    return recorded.then(() => {
      try {
        const channel = new BroadcastChannel(RECORD_CHANNEL);
        channel.postMessage({ type: 'record', app, version, logout: true });
        channel.close();
      } catch { /* no channel */ }
      postToWorker({ type: MSG.CLEAR_TOKENS, version });
      return Promise.all([flush(), dpopKeys.remove().catch(() => {})]);
    }).then(() => undefined);
  }

  // A single-use URL that joins the client fetching it (a dedicated or shared worker, which
  // cannot message the service worker) to this app: `await fetch(url)` in the worker.
  async function workerTicket() {
    const reg = await currentRegistration();
    if (!reg) throw new Error('pyauth-web: no service worker registration');
    const url = new URL(`__pyauth-web/join/${crypto.randomUUID()}`, reg.scope).href;
    postToWorker({ type: MSG.WORKER_TICKET, url });
    await flush();
    return url;
  }

  const api = {
    ready: null,
    configure: (options) => call((rt) => { rt.configure(options); }),
    setToken: (realmURL, token, refreshToken) => call((rt) => rt.set_token(realmURL, token, refreshToken ?? undefined)).then(flush),
    removeToken: (realmURL) => call((rt) => rt.remove_token(realmURL)).then(flush),
    clearTokens: () => ready.then(
      () => call((rt) => rt.clear_tokens()).then(flush),
      () => clearWithoutRuntime(),
    ),
    // Re-read localStorage now (after the host wrote it in this tab) and tell the worker.
    reload: () => call((rt) => rt.reload()).then(flush),
    workerTicket,
    attach,
    getToken: (url) => call(async (rt) => (await rt.get_token(url)) ?? null),
    // A DPoP proof (RFC 9449) for a request the host sends itself, e.g. the authorization-code
    // exchange at sign-in, which binds the tokens to this app's key (made now if there is none).
    dpopProof: (method, url, options = {}) => call((rt) => rt.dpop_proof(method, url, options)),
    fetch: (input, init) => authFetch(input, init, undefined),
    wrapFetch: (fetchFn) => (input, init) => authFetch(input, init, fetchFn),
    // SSE over fetch: {onEvent({type, data, id}), onStateChange(state), resync: async () => {}}.
    // Returns {close()} at once; the stream starts when the runtime is ready.
    stream: (url, options = {}) => {
      let handle = null;
      let closed = false;
      ready.then(() => { if (!closed) handle = runtime.stream(url, options); }, () => {});
      return {
        close() {
          closed = true;
          if (handle) { handle.close(); handle.destroy(); handle = null; }
        },
      };
    },
    // WebSocket with token rotation: {onMessage(data), onStateChange(state), tokenIn: 'message'|'url'}.
    // Resolves to {send(message), close(), state}; sends made while (re)connecting are buffered.
    socket: (url, options = {}) => call((rt) => {
      const sock = rt.socket(url, options);
      return {
        send: (message) => { try { sock.send(message); } catch (err) { throw plainError(err); } },
        close: () => { sock.close(); sock.destroy(); },
        get state() { return sock.state; },
      };
    }),
    state: () => call((rt) => rt.state_json()).then((json) => JSON.parse(json)),
    pyodide: null,  // the Pyodide instance, once ready: run your own Python next to the runtime
    config: Object.freeze({ ...config }),
  };
  const ready = boot();
  api.ready = ready;
  ready.catch((err) => {
    console.error(err);
    bootFailed = true;  // the worker's waiting requests fall through now, not after 3 s
    for (const event of early.splice(0)) event.ports[0].postMessage({ app });
  });
  /** @type {any} */ (window).pyauthWeb = api;
})();
