/* pyauth-web service worker: adds `Authorization: Bearer` to GET/HEAD requests for known realms,
 * and only for the clients that run the pyauth-web runtime.
 *
 * Apps: every message carries `app`, the page's storage key. Tokens, realms and logouts are kept
 * per app, so two apps sharing one origin (and one worker) never see each other's tokens.
 *
 * Opt-in: a client (window or worker) is served only once it joined an app: by sending any
 * message with that `app` (the loader says `hello` from its first moment), by answering a token
 * request (even with `pending`), or — for dedicated and shared workers, which cannot message the
 * worker — by fetching a single-use join URL that a page of that app asked for (`worker-ticket`).
 * A client that never joined (a page without the loader, HTML injected into one) gets no token.
 *
 * Protocol 1 (a page loaded before the deploy of this worker, still open): its messages and
 * answers name no app. Such a page is served as an app of its own (`legacyApp`), fed only by its
 * own messages and answers and serving only itself; any logout or removal, of any app, also
 * drops what these pages' apps hold (they answer the next miss from their own storage).
 *
 * On a miss the worker asks the page over a MessageChannel (200 ms budget, up to 3000 ms once the
 * page says "pending"), one round trip per app and URL at a time, and falls through to the
 * unauthenticated request when nobody answers. The message names below are the one place on this
 * side; the Python side's copy is pyauth_web/protocol.py, and a unit test checks that they agree.
 */
// @ts-check
'use strict';

// The worker's global scope, typed (TypeScript's DOM/webworker libraries type `self` as a plain
// WorkerGlobalScope): `make lint` checks this file with tsc --checkJs.
const scope = /** @type {ServiceWorkerGlobalScope} */ (/** @type {unknown} */ (self));

const MSG = Object.freeze({
  HELLO: 'hello',
  SYNC_TOKENS: 'sync-tokens',
  SET_REALM_TOKEN: 'set-realm-token',
  REMOVE_REALM_TOKEN: 'remove-realm-token',
  CLEAR_TOKENS: 'clear-tokens',
  WORKER_TICKET: 'worker-ticket',
  REQUEST_REALM_TOKEN: 'request-realm-token',
  PENDING: 'pending',
  ACK: 'ack',
});

const PROTOCOL_VERSION = 3;  // sent in every ack: a page of another version warns
const ANSWER_BUDGET_MS = 200;
const PENDING_BUDGET_MS = 3000;
const ASK_OTHERS_AFTER_MS = 100;
const MAX_EXP = 253402300799;  // 9999-12-31T23:59:59Z: larger, negative or non-finite exp is refused
const MAX_APP_LENGTH = 200;
const TICKET_TTL_MS = 60000;
const REDIRECT_FOLLOW = 'follow';
const REDIRECT_ERROR = 'error';
const JOIN_PATH = '__pyauth-web/join/';
const MAX_CLIENTS = 500;  // past this, client maps are pruned to the clients still alive
// Bounded memory whatever pages post (a hostile or buggy page must not grow the worker).
const MAX_APPS = 64;             // past this, the oldest app without tokens (else the oldest) goes
const MAX_APPS_PER_CLIENT = 16;  // a client joins at most this many apps
const MAX_ORIGINS = 256;         // realm origins kept per app (oldest first out)
const MAX_REMOVED = 256;         // removal sequence numbers kept per app (see dropToken)
const MAX_TICKETS = 64;          // join tickets waiting to be used
const MAX_TOKENS = 4096;         // tokens kept per app (past it the oldest goes: asked for on a miss)
const MAX_TOKEN_LENGTH = 65536;  // a session record's token longer than this is not restored

// app -> {tokens: Map<realm, {token, exp, redirect}>, origins: Set<origin>, skew,
//         clearedAt, removedAt: Map<realm, seq>, order: {cleared, since: Map<realm, version>},
//         dpopRealms: Set<realm>}
const apps = new Map();
// clientId -> [app, ...] in the order the client joined them: the clients that run the runtime.
const members = new Map();
// Clients asked once that never answered: not asked again until they join.
const silent = new Set();
// join URL -> {app, expires}: single-use tickets for dedicated and shared workers.
const tickets = new Map();
// No resurrection: every clear/remove takes a sequence number; a reply to a request that
// started before the clear/remove of its realm is dropped.
let seq = 0;
// Single-flight per app and URL: key -> Promise<{realmURL, token, exp, redirect} | null>
const inflight = new Map();

const isStr = (v) => typeof v === 'string' && v.length > 0;
// A protocol-1 page's app: named by its client, in a namespace no page can name (isApp).
const LEGACY_PREFIX = '\u0000protocol-1:';
const isApp = (v) => isStr(v) && v.length <= MAX_APP_LENGTH && !v.startsWith(LEGACY_PREFIX);
const isLegacy = (v) => typeof v === 'string' && v.startsWith(LEGACY_PREFIX);
const legacyApp = (clientId) => `${LEGACY_PREFIX}${clientId}`;
const LEGACY_MESSAGES = new Set([
  MSG.SYNC_TOKENS, MSG.SET_REALM_TOKEN, MSG.REMOVE_REALM_TOKEN, MSG.CLEAR_TOKENS,
]);
const isExp = (v) => v === null || v === undefined
  || (typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= MAX_EXP);
const originOf = (url) => { try { return new URL(url).origin; } catch { return null; } };
const redirectOf = (v) => (v === REDIRECT_FOLLOW ? REDIRECT_FOLLOW : REDIRECT_ERROR);

function isRealm(url) {
  if (!isStr(url) || !url.endsWith('/')) return false;
  try {
    const u = new URL(url);
    // The canonical (WHATWG) form of an http(s) URL without credentials, query or fragment.
    return (u.protocol === 'https:' || u.protocol === 'http:') && u.href === url
      && u.username === '' && u.password === '' && u.search === '' && u.hash === '';
  } catch { return false; }
}

// An app's state dropped to keep the map bounded loses its removal sequence numbers, so a state
// made later refuses replies to asks that started before the drop (no resurrection).
let evictedAt = 0;

function appState(app) {
  let state = apps.get(app);
  if (!state) {
    if (apps.size >= MAX_APPS) {
      let victim = null;
      for (const [name, s] of apps) if (s.tokens.size === 0) { victim = name; break; }
      apps.delete(victim ?? apps.keys().next().value);
      evictedAt = ++seq;
    }
    state = {
      tokens: new Map(), origins: new Set(), skew: null, clearedAt: evictedAt, removedAt: new Map(), fp: null,
      legacy: isLegacy(app), order: { cleared: 0, since: new Map() }, dpopRealms: new Set(),
    };
    apps.set(app, state);
    // A state made after the start (a new app, or one evicted before) takes its order from the
    // record too, not only from the messages that come.
    if (stateLoaded && !state.legacy) followRecords(app);
  }
  return state;
}

function addOrigin(state, origin) {
  if (state.origins.has(origin)) return false;
  state.origins.add(origin);
  if (state.origins.size > MAX_ORIGINS) state.origins.delete(state.origins.values().next().value);
  return true;
}

// Bounded memory: drop clients that are gone (a running worker sees many page loads).
let pruning = null;
function pruneClients() {
  if (pruning) return;
  pruning = scope.clients.matchAll({ includeUncontrolled: true, type: 'all' })
    .then((all) => {
      const live = new Set(all.map((c) => c.id));
      for (const id of [...members.keys()]) if (!live.has(id)) members.delete(id);
      for (const id of [...silent]) if (!live.has(id)) silent.delete(id);
      for (const app of [...apps.keys()]) {
        if (isLegacy(app) && !live.has(app.slice(LEGACY_PREFIX.length))) apps.delete(app);
      }
    })
    .catch(() => {})
    .finally(() => { pruning = null; });
}

function join(clientId, app) {
  if (!isStr(clientId) || !(isApp(app) || app === legacyApp(clientId))) return false;
  if (members.size + silent.size > MAX_CLIENTS) pruneClients();
  silent.delete(clientId);
  const joined = members.get(clientId) || [];
  if (joined.includes(app) || joined.length >= MAX_APPS_PER_CLIENT) return false;
  members.set(clientId, [...joined, app]);
  return true;
}

// The skew comes from the page with every token (sync, set, reply): the worker has no default
// of its own. Without one (never expected), a token with an exp is not trusted: ask the page.
function fresh(state, entry) {
  if (entry.exp == null) return true;
  return state.skew !== null && Date.now() / 1000 < entry.exp - state.skew;
}

function sameEntry(a, b) {
  return a && b && a.token === b.token && a.exp === b.exp && a.redirect === b.redirect && a.dpop === b.dpop && a.v === b.v;
}

// A JWT bound to a DPoP key (cnf.jkt, RFC 9449 §6.1; read, not verified — the rule of
// pyauth_web/dpop.py's bound_jkt) is never sent as Bearer, whatever a page says about it (a
// protocol-1 tab knows nothing of DPoP; a binding remembered per app can be evicted).
function jwtBound(token) {
  const parts = token.split('.');
  if (parts.length !== 3) return false;
  try {
    const claims = JSON.parse(atob(parts[1].replace(/-/g, '+').replace(/_/g, '/')));
    const jkt = claims && typeof claims === 'object' && claims.cnf && typeof claims.cnf === 'object' ? claims.cnf.jkt : null;
    return typeof jkt === 'string' && /^[A-Za-z0-9_-]{43}$/.test(jkt);
  } catch { return false; }
}

// A realm whose tokens the app declares DPoP-bound (data-dpop, configure({dpop}): opaque tokens
// say nothing of it themselves). A protocol-1 tab knows nothing of DPoP and which app it runs is
// unknown: for its copy, a realm any app declares bound is bound.
function declaredBound(state, realmURL) {
  if (!state.legacy) return state.dpopRealms.has(realmURL);
  for (const other of apps.values()) if (!other.legacy && other.dpopRealms.has(realmURL)) return true;
  return false;
}

// Returns true when the app's state changed.
// `version`: the session record version the token was read at (a page of an older bundle sends
// none): a token read earlier than the one held never replaces it.
function putToken(state, realmURL, token, exp, redirect, dpop, version) {
  if (!isRealm(realmURL) || !isStr(token) || !isExp(exp)) return false;
  const before = state.tokens.get(realmURL);
  if (before !== undefined && isVersion(version) && isVersion(before.v) && version < before.v) return false;
  if (before === undefined && state.tokens.size >= MAX_TOKENS) {  // the oldest is asked for again
    state.tokens.delete(state.tokens.keys().next().value);
  }
  // A token once known to be DPoP-bound stays bound (a tab that was not told so never
  // downgrades it to Bearer).
  const bound = dpop === true || (before !== undefined && before.token === token && before.dpop)
    || jwtBound(token) || declaredBound(state, realmURL);
  const entry = { token, exp: exp ?? null, redirect: redirectOf(redirect), dpop: bound, v: isVersion(version) ? version : undefined };
  if (entry.dpop && !sameEntry(before, entry)) state.key = null;  // a new sign-in may bring a new key
  const added = addOrigin(state, new URL(realmURL).origin);
  const changed = !sameEntry(before, entry) || added;
  state.tokens.set(realmURL, entry);
  return changed;
}

// A realm dropped from an app (removed, logged out, missing from a sync, a changed session)
// is also dropped from the copies kept for protocol-1 tabs (which app such a tab runs is
// unknown), and one dropped by a protocol-1 tab from every app's copy. Those are caches: pages
// answer the next miss from their own storage.
function dropToken(state, realmURL, spread = true) {
  let dropped = false;
  if (spread) {
    for (const other of apps.values()) {
      if (other !== state && (other.legacy || state.legacy)) dropped = dropToken(other, realmURL, false) || dropped;
    }
  }
  state.removedAt.delete(realmURL);
  state.removedAt.set(realmURL, ++seq);
  if (state.removedAt.size > MAX_REMOVED) {  // the oldest goes: refuse replies older than it
    const [oldest, at] = state.removedAt.entries().next().value;
    state.removedAt.delete(oldest);
    state.clearedAt = Math.max(state.clearedAt, at);
  }
  return state.tokens.delete(realmURL) || dropped;
}

function setSkew(state, v) {
  if (typeof v === 'number' && Number.isFinite(v) && v >= 0 && state.skew !== v) {
    state.skew = v;
    return true;
  }
  return false;
}

function addRealmOrigins(state, realms) {
  let changed = false;
  if (!Array.isArray(realms)) return changed;
  for (const realm of realms) {
    if (!isRealm(realm)) continue;
    const origin = new URL(realm).origin;
    if (addOrigin(state, origin)) changed = true;
  }
  return changed;
}

// --- the order of the session (pyauth_web/record.py) -------------------------------------------
// The app's session record (IndexedDB, consistent across tabs and this worker) orders logouts,
// removals and sign-ins by version. Every message and reply that gives this worker a token
// carries `version`, the record version it was read at; messages also carry the record's marks:
// `cleared` (the version of the last logout) and `since` (per realm, the version its current
// session began or ended at). A token is kept only if no logout, and no removal or new session
// of its realm, came after it (SessionRecord.accepts): whatever order the messages of different
// tabs arrive in, nothing read before a logout brings a token back. A message without a version
// comes from a page of an older bundle: taken as before.
// Versions follow the pages' clocks (ms): one more than a day ahead is not a version (a page
// cannot stop this worker's order for good by sending a huge one).
const MAX_AHEAD_MS = 86400000;
const isVersion = (v) => Number.isSafeInteger(v) && v >= 0 && v <= Date.now() + MAX_AHEAD_MS;

function accepts(state, version, realmURL) {
  if (version === undefined) return true;
  if (!isVersion(version)) return false;
  return version >= state.order.cleared && version >= (state.order.since.get(realmURL) || 0);
}

// Raise the app's marks to what a message or the record says (they only grow), and drop a token
// held that was read before them. Returns whether the app's state changed.
function noteOrder(state, cleared, since) {
  const order = state.order;
  let rose = false;
  if (isVersion(cleared) && cleared > order.cleared) { order.cleared = cleared; rose = true; }
  for (const [realmURL, at] of since instanceof Map ? since : Object.entries(since && typeof since === 'object' ? since : {})) {
    if (!isRealm(realmURL) || !isVersion(at) || at <= (order.since.get(realmURL) || 0)) continue;
    order.since.set(realmURL, at);
    rose = true;
    if (order.since.size > MAX_REMOVED) {  // the oldest goes: refuse every version older than it
      let oldest = null;
      for (const [realm, when] of order.since) if (oldest === null || when < order.since.get(oldest)) oldest = realm;
      order.cleared = Math.max(order.cleared, order.since.get(oldest));
      order.since.delete(oldest);
    }
  }
  let dropped = false;
  if (rose) {
    for (const [realm, entry] of [...state.tokens]) {
      if (isVersion(entry.v) && !accepts(state, entry.v, realm)) dropped = dropToken(state, realm) || dropped;
    }
  }
  return rose || dropped;
}

// The app a message is for: the one it names (protocols 2 and 3), or a protocol-1 page's own
// (never for a client that joined an app by name: it speaks a later protocol).
function appOf(msg, clientId) {
  if (isApp(msg.app)) return msg.app;
  const v1 = msg.app === undefined && msg.v === undefined && LEGACY_MESSAGES.has(msg.type);
  if (!v1 || !isStr(clientId)) return null;
  const joined = members.get(clientId) || [];
  return joined.every((app) => isLegacy(app)) ? legacyApp(clientId) : null;
}

function clearOne(state) {
  const had = state.tokens.size > 0;
  state.tokens.clear();
  state.key = null;  // the page deletes the app's DPoP key
  state.clearedAt = ++seq;
  return had;
}

// A logout: the app's copy, and (as for dropToken) the protocol-1 tabs' copies, or every copy
// when it came from a protocol-1 tab.
function clearTokens(state) {
  let changed = clearOne(state);
  for (const other of apps.values()) {
    if (other !== state && (other.legacy || state.legacy)) changed = clearOne(other) || changed;
  }
  return changed;
}

// Applies one page message; returns true when the saved state must be rewritten.
function applyMessage(msg, clientId) {
  const app = appOf(msg, clientId);
  if (app === null) return false;
  let changed = join(clientId, app);
  const state = appState(app);
  const fp = isStr(msg.fp) ? msg.fp : null;
  switch (msg.type) {
    case MSG.HELLO:
      changed = addRealmOrigins(state, msg.realms) || changed;  // asked for from the first paint
      // The page's stored session differs from the one this state was synced from (the host
      // wrote it on a page without the runtime, or a logout never reached this worker): drop the
      // copy; misses ask the page, which answers from storage.
      if (fp !== null && fp !== state.fp) {
        for (const realm of [...state.tokens.keys()]) changed = dropToken(state, realm) || changed;
        for (const other of apps.values()) if (other.legacy) changed = clearOne(other) || changed;
        state.fp = fp;
        state.key = null;
        changed = true;
      }
      break;
    case MSG.SYNC_TOKENS: {
      if (!msg.tokens || typeof msg.tokens !== 'object') break;
      changed = noteOrder(state, msg.cleared, msg.since) || changed;
      if (!state.legacy && msg.dpop && typeof msg.dpop === 'object') {  // the realms it declares bound
        const declared = new Set(Object.keys(msg.dpop).filter((r) => isRealm(r) && msg.dpop[r] === true).slice(0, MAX_ORIGINS));
        if ([...declared].some((r) => !state.dpopRealms.has(r)) || declared.size !== state.dpopRealms.size) {
          state.dpopRealms = declared;
          changed = true;
        }
      }
      changed = setSkew(state, msg.skew) || changed;
      changed = addRealmOrigins(state, msg.realms) || changed;
      const expires = (msg.expires && typeof msg.expires === 'object') ? msg.expires : {};
      const redirects = (msg.redirects && typeof msg.redirects === 'object') ? msg.redirects : {};
      const dpop = (msg.dpop && typeof msg.dpop === 'object') ? msg.dpop : {};
      // A full sync is authoritative for its app: realms missing from it are gone (unless the
      // token held was read later than the sync: a newer sign-in another tab just made).
      for (const [realm, entry] of [...state.tokens]) {
        if (Object.hasOwn(msg.tokens, realm)) continue;
        if (isVersion(msg.version) && isVersion(entry.v) && msg.version < entry.v) continue;
        changed = dropToken(state, realm) || changed;
      }
      for (const other of state.legacy ? [] : apps.values()) {  // what protocol-1 tabs hold too
        if (!other.legacy) continue;
        for (const realm of [...other.tokens.keys()]) {
          if (!Object.hasOwn(msg.tokens, realm)) changed = dropToken(other, realm, false) || changed;
        }
      }
      for (const [realm, token] of Object.entries(msg.tokens)) {
        if (!accepts(state, msg.version, realm)) continue;  // read before a logout, a removal or a new session
        if (putToken(state, realm, token, expires[realm], redirects[realm], Object.hasOwn(dpop, realm) && dpop[realm] === true, msg.version)) changed = true;
        else if (!isRealm(realm) || !isStr(token) || !isExp(expires[realm])) changed = dropToken(state, realm) || changed;
      }
      break;
    }
    case MSG.SET_REALM_TOKEN:
      if (isStr(msg.realmURL)) changed = noteOrder(state, undefined, { [msg.realmURL]: msg.since }) || changed;
      changed = setSkew(state, msg.skew) || changed;
      if (accepts(state, msg.version, msg.realmURL)) {
        changed = putToken(state, msg.realmURL, msg.token, msg.exp, msg.redirect, msg.dpop, msg.version) || changed;
      }
      break;
    case MSG.REMOVE_REALM_TOKEN:
      if (isStr(msg.realmURL)) {
        changed = noteOrder(state, undefined, { [msg.realmURL]: msg.version }) || changed;
        changed = dropToken(state, msg.realmURL) || changed;
      }
      break;
    case MSG.CLEAR_TOKENS:  // this app's copy, and the spread of dropToken
      changed = noteOrder(state, msg.version, undefined) || changed;
      changed = clearTokens(state) || changed;
      break;
    case MSG.WORKER_TICKET:
      for (const [url, t] of tickets) if (t.expires < Date.now()) tickets.delete(url);
      if (isStr(msg.url) && msg.url.startsWith(new URL(JOIN_PATH, scope.registration.scope).href)) {
        tickets.set(msg.url, { app, expires: Date.now() + TICKET_TTL_MS });
        if (tickets.size > MAX_TICKETS) tickets.delete(tickets.keys().next().value);
      }
      break;
    default:
      return changed;
  }
  // The state now mirrors the stored session the page posted from.
  if (fp !== null && msg.type !== MSG.WORKER_TICKET && state.fp !== fp) { state.fp = fp; changed = true; }
  // A protocol-1 tab changed the stored session (it sends no fingerprint): the next hello of a
  // protocol-2 page finds its app's copy stale, and drops it and every protocol-1 copy.
  if (state.legacy && changed) for (const other of apps.values()) if (!other.legacy) other.fp = null;
  return changed;
}

// The state survives worker restarts (Chromium stops idle workers), so most requests after a
// restart need no round trip. It holds nothing the session records do not already hold, plus
// which clients joined which app (client ids of closed clients are dropped when it is loaded);
// a restart brings back only what the records still hold (restore).
const STATE_CACHE = 'pyauth-web-state-v2';
const STATE_KEY = new URL('__pyauth-web/state', scope.registration.scope).href;
let saving = Promise.resolve();

function snapshot() {
  const out = {};
  for (const [app, s] of apps) {
    out[app] = {
      tokens: Object.fromEntries(s.tokens), origins: [...s.origins], skew: s.skew, fp: s.fp,
      order: { cleared: s.order.cleared, since: Object.fromEntries(s.order.since) }, dpopRealms: [...s.dpopRealms],
    };
  }
  return JSON.stringify({ apps: out, members: Object.fromEntries(members) });
}

// A burst of changes (many tabs syncing, a page posting thousands of messages) is one write:
// the snapshot is taken when the queued write runs, after every change made before it.
let queued = null;

function save() {
  if (queued) return queued;
  queued = saving = saving
    .then(() => {
      queued = null;
      const state = snapshot();
      return caches.open(STATE_CACHE)
        .then((cache) => cache.put(STATE_KEY, new Response(state, { headers: { 'Content-Type': 'application/json' } })));
    })
    .catch(() => {});
  return queued;
}

// What was saved comes back only as far as the session records (IndexedDB: written by the pages
// before they tell any worker) still hold it: a token the app's record does not hold now (a
// logout or removal this worker heard of but did not save before it was stopped, or never heard
// of: a version installed while a page logged out) is not restored; nor is any token of an app
// without a record (a page of an older bundle: its tabs answer the next miss).
function restore(saved, liveClients, records) {
  if (!saved || typeof saved !== 'object') return;
  const savedApps = saved.apps && typeof saved.apps === 'object' ? saved.apps : {};
  for (const [app, s] of Object.entries(savedApps)) {
    const legacyAlive = isLegacy(app) && liveClients.has(app.slice(LEGACY_PREFIX.length));
    if (!(isApp(app) || legacyAlive) || !s || typeof s !== 'object') continue;
    const state = appState(app);
    setSkew(state, s.skew);
    if (isStr(s.fp)) state.fp = s.fp;
    if (s.order && typeof s.order === 'object') noteOrder(state, s.order.cleared, s.order.since);
    if (!state.legacy && Array.isArray(s.dpopRealms)) {
      state.dpopRealms = new Set(s.dpopRealms.filter(isRealm).slice(0, MAX_ORIGINS));
    }
    for (const origin of Array.isArray(s.origins) ? s.origins : []) {
      if (typeof origin === 'string' && originOf(origin) === origin) addOrigin(state, origin);
    }
    const record = records.get(app);
    for (const [realm, e] of Object.entries(s.tokens && typeof s.tokens === 'object' ? s.tokens : {})) {
      if (!e || typeof e !== 'object' || !record || record.tokens.get(realm) !== e.token) continue;
      putToken(state, realm, e.token, e.exp, e.redirect, e.dpop, e.v);
    }
  }
  for (const [app, record] of records) if (apps.has(app)) noteOrder(apps.get(app), record.cleared, record.since);
  const savedMembers = saved.members && typeof saved.members === 'object' ? saved.members : {};
  for (const [clientId, joined] of Object.entries(savedMembers)) {
    if (!liveClients.has(clientId) || !Array.isArray(joined)) continue;
    for (const app of joined) join(clientId, app);
  }
}

// --- the session records (IndexedDB, pyauth_web/record.py; the pages write them) ---------------
const RECORD = Object.freeze({ DB: 'pyauth-web-session', STORE: 'records', CHANNEL: 'pyauth-web/session', NOTICE: 'record' });

// app -> {version, cleared, since: Map, tokens: Map} of every record (an unreadable one is empty;
// none at all after RECORD_WAIT_MS: then nothing is restored, and misses ask the pages).
const RECORD_WAIT_MS = 2000;
function readRecords() {
  return Promise.race([readRecordsNow(), new Promise((resolve) => { setTimeout(() => resolve(new Map()), RECORD_WAIT_MS); })]);
}

function readRecordsNow() {
  return new Promise((resolve) => {
    const out = new Map();
    let open;
    try { open = indexedDB.open(RECORD.DB, 1); } catch { resolve(out); return; }  // storage blocked
    open.onupgradeneeded = () => { open.result.createObjectStore(RECORD.STORE); };
    open.onerror = () => resolve(out);
    open.onblocked = () => resolve(out);
    open.onsuccess = () => {
      const db = open.result;
      try {
        const store = db.transaction(RECORD.STORE, 'readonly').objectStore(RECORD.STORE);
        const keys = store.getAllKeys();
        const values = store.getAll();
        values.onsuccess = () => {
          db.close();
          keys.result.forEach((app, i) => { if (isApp(app)) out.set(app, parseRecord(values.result[i])); });
          resolve(out);
        };
        values.onerror = () => { db.close(); resolve(out); };
      } catch { db.close(); resolve(out); }
    };
  });
}

function parseRecord(text) {
  let r = null;
  try { r = JSON.parse(typeof text === 'string' ? text : 'null'); } catch { /* unreadable */ }
  const record = r && typeof r === 'object' && !Array.isArray(r) ? r : {};
  const tokens = new Map();
  for (const [realm, token] of Object.entries(record.tokens && typeof record.tokens === 'object' ? record.tokens : {})) {
    if (isRealm(realm) && isStr(token)) tokens.set(realm, token);
  }
  // (read as pyauth_web/record.py reads it: no mark beyond the version, no token over 64 KiB)
  const version = isVersion(record.version) ? record.version : 0;
  const since = new Map();
  for (const [realm, at] of Object.entries(record.since && typeof record.since === 'object' ? record.since : {})) {
    if (isRealm(realm) && isVersion(at)) since.set(realm, Math.min(at, version));
  }
  for (const [realm, token] of [...tokens]) if (token.length > MAX_TOKEN_LENGTH) tokens.delete(realm);
  return { version, cleared: isVersion(record.cleared) ? Math.min(record.cleared, version) : 0, since, tokens };
}

// The app now holds nothing its record does not hold (a token whose realm the record holds
// another token for, or none, goes: the next miss asks a page), and the record's marks.
function followRecord(app, record) {
  const state = apps.get(app);
  if (!state) return false;
  let changed = noteOrder(state, record.cleared, record.since);
  for (const [realm, entry] of [...state.tokens]) {
    if (record.tokens.get(realm) !== entry.token) changed = dropToken(state, realm) || changed;
  }
  if (changed) for (const other of apps.values()) if (other.legacy) changed = clearOne(other) || changed;
  return changed;
}

// Read the records again and follow them: when this version activates (it may have started
// while a page logged out, before any page listed it), and when a page says a session ended.
let following = Promise.resolve();
function followRecords(only) {
  following = following.then(() => loaded).then(() => readRecords()).then((records) => {
    let changed = false;
    for (const app of only ? [only] : [...apps.keys()]) {
      if (isLegacy(app)) continue;
      changed = followRecord(app, records.get(app) || parseRecord(null)) || changed;
    }
    if (changed) return save();
    return undefined;
  }).catch(() => {});
  return following;
}

// Created before anything is read: a notice posted after this moment reaches this worker; one
// posted before it was posted after the record changed, which the read below then sees.
const notices = new BroadcastChannel(RECORD.CHANNEL);
notices.onmessage = (event) => {
  const notice = event.data;
  if (!notice || notice.type !== RECORD.NOTICE || !isApp(notice.app)) return;
  const state = apps.get(notice.app);
  if (state && notice.logout === true && clearTokens(state)) save();  // drop everything at once
  followRecords(notice.app);  // the order comes from the record itself, never from a notice
};

let stateLoaded = false;
const loaded = Promise.all([
  caches.open(STATE_CACHE).then((cache) => cache.match(STATE_KEY)).then((resp) => resp && resp.json()),
  scope.clients.matchAll({ includeUncontrolled: true, type: 'all' }).then((all) => new Set(all.map((c) => c.id))),
  readRecords(),
])
  .then(([saved, live, records]) => restore(saved, live, records))
  .catch(() => { /* an unreadable saved state is dropped */ })
  .finally(() => { stateLoaded = true; });

scope.addEventListener('message', (event) => {
  const msg = event.data;
  if (!msg || typeof msg !== 'object') return;
  const source = event.source;  // the client that posted (only clients message the worker)
  const clientId = source && 'id' in source ? source.id : null;
  if (msg.type === MSG.HELLO && clientId) event.waitUntil(claimIfUncontrolled(clientId).catch(() => {}));
  event.waitUntil(loaded.then(() => {
    const changed = applyMessage(msg, clientId);
    // Acknowledged once applied and saved. (Through the client, not a transferred port: in
    // Chromium a port answered by the active worker delays a waiting worker's activation.)
    return (changed ? save() : saving).then(() => {
      if (source && isStr(msg.ack)) source.postMessage({ type: MSG.ACK, ack: msg.ack, v: PROTOCOL_VERSION });
    });
  }));
});

// A page that says hello but loaded without this worker (Shift+Reload bypasses it, or it loaded
// before an update activated) is taken under control, as `activate` does on a first visit: its
// later requests then get the header, and its loader re-requests what failed meanwhile.
async function claimIfUncontrolled(clientId) {
  const controlled = await scope.clients.matchAll({ type: 'window' });  // controlled ones only
  if (!controlled.some((c) => c.id === clientId)) await scope.clients.claim();
}

// Ask one client; resolves with its final answer, or never (the caller races a deadline).
// `accept(reply)` says whether a reply counts (the app that owns the URL, or any app at all
// when the client has not joined one yet); replies that do not count are ignored.
function askClient(client, requestURL, accept, onPending, keyMissing) {
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = (ev) => {
      const reply = ev.data;
      if (!reply || typeof reply !== 'object' || !accept(reply, client)) return;
      if (reply.type === MSG.PENDING) { onPending(); return; }
      channel.port1.close();
      resolve(reply);
    };
    const msg = keyMissing ? { type: MSG.REQUEST_REALM_TOKEN, requestURL, keyMissing } : { type: MSG.REQUEST_REALM_TOKEN, requestURL };
    client.postMessage(msg, [channel.port2]);
  });
}

// `app` is the app that owns the URL for this client, or null when the client joined none yet
// (it is then asked alone, and any answer makes it join the answering app).
// `keyMissing`: this worker has no DPoP key for the app's bound token: the page checks the key
// (and reports a lost one once) before it answers.
async function askPage(app, requestURL, clientId, keyMissing = false) {
  const startSeq = seq;
  const t0 = Date.now();
  const initiator = clientId ? await scope.clients.get(clientId) : null;
  const accept = (reply, client) => {  // any answer from an app joins the client to it
    // An answer without `app` is a protocol-1 page's: it counts for that page's own app only.
    const from = reply.app === undefined ? legacyApp(client.id) : reply.app;
    if (!isApp(from) && from !== legacyApp(client.id)) return false;
    if (app !== null && from !== app) return false;
    if (join(client.id, from)) save();
    return true;
  };
  const reply = await new Promise((resolve) => {
    let deadline = null;
    let others = null;
    let extended = false;
    const finish = (value) => { clearTimeout(deadline); clearTimeout(others); resolve(value); };
    const onPending = () => {  // the page is working on it: wait up to PENDING_BUDGET_MS in all
      if (extended) return;
      extended = true;
      clearTimeout(deadline);
      deadline = setTimeout(() => finish(null), PENDING_BUDGET_MS - (Date.now() - t0));
    };
    const ask = (client) => askClient(client, requestURL, accept, onPending, keyMissing).then(finish);
    // Other windows running the same app may answer for a busy initiator, or for a worker
    // client; only answers from that app count.
    const askOthers = async () => {
      if (app === null || isLegacy(app)) return;  // a protocol-1 page answers for itself only
      for (const c of await scope.clients.matchAll({ type: 'window' })) {
        if (c.id !== clientId && !silent.has(c.id)) ask(c);
      }
    };
    deadline = setTimeout(() => finish(null), ANSWER_BUDGET_MS);
    if (initiator && initiator.type === 'window') {
      ask(initiator);
      others = setTimeout(askOthers, ASK_OTHERS_AFTER_MS);
    } else {
      askOthers();
    }
  });
  if (!reply) {
    if (app === null && clientId) {
      silent.add(clientId);
      if (members.size + silent.size > MAX_CLIENTS) pruneClients();
    }
    return null;
  }
  return takeReply(app ?? (reply.app === undefined ? legacyApp(clientId) : reply.app), reply, requestURL, startSeq);
}

// A page's token for `requestURL`, for an ask that started at `startSeq`: kept unless it is not
// for that URL's realm, or a logout, a removal of the realm, or the app's eviction (or the loss
// of its removal marks past MAX_REMOVED) came after the ask started: a late reply never
// resurrects a token.
function takeReply(owner, reply, requestURL, startSeq) {
  if (!isRealm(reply.realmURL) || !isStr(reply.token) || !isExp(reply.exp)) return null;
  if (!requestURL.startsWith(reply.realmURL)) return null;  // a token only for its own realm
  const state = appState(owner);
  if (state.clearedAt > startSeq || (state.removedAt.get(reply.realmURL) || 0) > startSeq) return null;
  if (!accepts(state, reply.version, reply.realmURL)) return null;  // read before a logout or a removal
  const skewChanged = setSkew(state, reply.skew);
  if (putToken(state, reply.realmURL, reply.token, reply.exp, reply.redirect, reply.dpop, reply.version) || skewChanged) save();
  const entry = state.tokens.get(reply.realmURL);
  return entry && { ...entry, app: owner };
}

function askPageOnce(app, requestURL, clientId) {
  // Unknown clients are asked per client: they must answer for themselves.
  const key = app === null ? `?${clientId}\n${requestURL}` : `${app}\n${requestURL}`;
  let p = inflight.get(key);
  if (!p) {
    p = askPage(app, requestURL, clientId).catch(() => null).finally(() => inflight.delete(key));
    inflight.set(key, p);
  }
  return p;
}

function withAuth(request, entry, app, clientId) {
  return entry.dpop ? withProof(request, entry, app, clientId)
    : send(request, entry, `Bearer ${entry.token}`, null);
}

function send(request, entry, authorization, proof) {
  const headers = new Headers(request.headers);
  headers.set('Authorization', authorization);
  if (proof !== null) headers.set(DPOP.PROOF_HEADER, proof);
  return fetch(new Request(request.url, {
    method: request.method,
    headers,
    mode: 'cors',
    credentials: 'same-origin',
    cache: request.cache === 'only-if-cached' ? 'default' : request.cache,
    // A same-origin redirect keeps the header (a cross-origin one drops it): a realm whose
    // redirect mode is 'error' (the default for path-scoped realms) fails instead. A proof
    // names one URL: a request carrying one never follows a redirect.
    redirect: entry.redirect === REDIRECT_FOLLOW && proof === null ? request.redirect : REDIRECT_ERROR,
    referrer: request.referrer,
    referrerPolicy: request.referrerPolicy,
    integrity: request.integrity,
  }));
}

// --- DPoP (RFC 9449): the proof for a bound token; the rules are pyauth_web/dpop.py's --------
// The app's key pair lives in IndexedDB (made by the page, non-extractable); this worker reads
// it once per app and signs a new proof per request. Without a key the request falls through
// unauthenticated (the page reports the lost key once). A `use_dpop_nonce` answer is retried
// once with the server's nonce, kept per origin and updated from any response's DPoP-Nonce.
const DPOP = Object.freeze({
  DB: 'pyauth-web-dpop', STORE: 'keys', PROOF_HEADER: 'DPoP', NONCE_HEADER: 'DPoP-Nonce',
  TYP: 'dpop+jwt', ALG: 'ES256', MAX_NONCE_LENGTH: 1024, MAX_ORIGINS: 256,
});
const nonces = new Map();  // origin -> the newest nonce it gave
const NONCE_RE = /^[\x21\x23-\x5b\x5d-\x7e]+$/;
const DPOP_CHALLENGE_RE = /(?:^|,)\s*DPoP(?:\s|$)/i;
const USE_NONCE_RE = /\berror\s*=\s*"?use_dpop_nonce"?(?:\s|,|$)/;

function readKey(app) {
  return new Promise((resolve) => {
    let open;
    try { open = indexedDB.open(DPOP.DB, 1); } catch { resolve(null); return; }  // storage blocked
    open.onupgradeneeded = () => { open.result.createObjectStore(DPOP.STORE); };
    open.onerror = () => resolve(null);
    open.onsuccess = () => {
      const db = open.result;
      try {
        const req = db.transaction(DPOP.STORE, 'readonly').objectStore(DPOP.STORE).get(app);
        req.onsuccess = () => { db.close(); resolve(req.result || null); };
        req.onerror = () => { db.close(); resolve(null); };
      } catch { db.close(); resolve(null); }
    };
  });
}

function keyOf(app) {
  const state = appState(app);
  if (!state.key) {
    const key = readKey(app).then((record) => (record && record.privateKey && record.jwk ? record : null));
    state.key = key;
    key.then((record) => { if (!record && state.key === key) state.key = null; });  // read again next time
  }
  return state.key;
}

const b64url = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes)))
  .replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
const jsonB64 = (value) => b64url(new TextEncoder().encode(JSON.stringify(value)));

function keepNonce(url, value) {
  if (typeof value !== 'string' || value.length > DPOP.MAX_NONCE_LENGTH || !NONCE_RE.test(value)) return;
  const origin = originOf(url);
  nonces.delete(origin);
  nonces.set(origin, value);
  if (nonces.size > DPOP.MAX_ORIGINS) nonces.delete(nonces.keys().next().value);
}

function asksForNonce(response) {
  const challenge = response.headers.get('WWW-Authenticate') || '';
  return response.status === 401 && DPOP_CHALLENGE_RE.test(challenge) && USE_NONCE_RE.test(challenge);
}

async function proofFor(key, entry, method, url) {
  if (!entry.ath) {
    entry.ath = b64url(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(entry.token)));
  }
  const htu = new URL(url);
  htu.search = '';
  htu.hash = '';
  const claims = {
    jti: b64url(crypto.getRandomValues(new Uint8Array(18))), htm: method, htu: htu.href,
    iat: Math.floor(Date.now() / 1000), ath: entry.ath,
  };
  const nonce = nonces.get(originOf(url));
  if (nonce !== undefined) claims.nonce = nonce;
  if (!key.head) {  // the protected header is the same for every proof of this key
    const jwk = { kty: key.jwk.kty, crv: key.jwk.crv, x: key.jwk.x, y: key.jwk.y };
    key.head = jsonB64({ typ: DPOP.TYP, alg: DPOP.ALG, jwk });
  }
  const input = `${key.head}.${jsonB64(claims)}`;
  const signature = await crypto.subtle.sign(
    { name: 'ECDSA', hash: 'SHA-256' }, key.privateKey, new TextEncoder().encode(input),
  );
  return `${input}.${b64url(signature)}`;
}

// The first proof-carrying request to an origin goes alone: the others wait (bounded) for its
// answer, which brings the origin's nonce if it wants one. So a page of many images costs one
// `use_dpop_nonce` refusal per origin, not one per image.
const probing = new Map();  // origin -> Promise settled when its first request was answered
const probed = new Set();   // origins whose first request was answered (bounded)
const PROBE_WAIT_MS = 3000;

async function withProof(request, entry, app, clientId) {
  let key = await keyOf(app);
  if (!key) {  // no key here: the page checks (and reports a lost key once), then answers
    const answer = await askPage(app, request.url, clientId, true);
    key = answer && answer.token === entry.token ? await keyOf(app) : null;
    if (!key) return fetch(request);
  }
  const origin = originOf(request.url);
  /** @type {null | ((value?: unknown) => void)} */
  let settle = null;
  if (!probed.has(origin) && !nonces.has(origin)) {
    const ahead = probing.get(origin);
    if (ahead) {
      await Promise.race([ahead, new Promise((resolve) => { setTimeout(resolve, PROBE_WAIT_MS); })]);
    } else {
      probing.set(origin, new Promise((resolve) => { settle = resolve; }));
    }
  }
  try {
    let response = null;
    for (let attempt = 0; attempt < 2; attempt++) {  // at most one nonce retry per request
      const used = nonces.get(origin);
      // A key or a signature that fails (storage, WebCrypto) sends nothing: fall through. A
      // failed request is the page's to see, as for a Bearer token (never resent without it).
      const proof = await proofFor(key, entry, request.method, request.url).catch(() => null);
      if (proof === null) return response || fetch(request);
      response = await send(request, entry, `DPoP ${entry.token}`, proof);
      keepNonce(request.url, response.headers.get(DPOP.NONCE_HEADER));
      if (!asksForNonce(response) || nonces.get(origin) === used) break;
    }
    return response;
  } finally {
    if (settle) {
      probed.add(origin);
      if (probed.size > DPOP.MAX_ORIGINS) probed.delete(probed.values().next().value);
      probing.delete(origin);
      settle();
    }
  }
}

// The app (among those the client joined) that owns `url`: the longest realm holding a token,
// ties to the app joined first; else the first app that knows the URL's origin (or knows no
// origin yet). Returns {app, entry} or null.
function ownerOf(joined, url, origin) {
  let best = null;
  for (const app of joined) {
    const state = apps.get(app);
    if (!state) continue;
    for (const [realm, entry] of state.tokens) {
      if (url.startsWith(realm) && (best === null || realm.length > best.realm.length)) {
        best = { app, realm, entry };
      }
    }
  }
  if (best) return best;
  for (const app of joined) {
    const state = apps.get(app);
    if (!state || state.origins.size === 0 || state.origins.has(origin)) return { app, entry: null };
  }
  return null;
}

function anyAppKnows(origin) {
  let knowsAny = false;
  for (const state of apps.values()) {
    if (state.origins.has(origin)) return true;
    if (state.origins.size > 0) knowsAny = true;
  }
  return !knowsAny;  // at cold start (no origin known at all) every origin may be a realm's
}

function joinWithTicket(url, clientId) {
  const ticket = tickets.get(url);
  tickets.delete(url);
  if (!ticket || ticket.expires < Date.now() || !clientId) return new Response(null, { status: 403 });
  if (join(clientId, ticket.app)) save();
  return new Response(null, { status: 204 });
}

// The response for a GET/HEAD that may need a token, or null to leave the request alone.
function route(request, clientId) {
  const url = request.url;
  if (!/^https?:/.test(url)) return null;
  if (tickets.has(url)) return joinWithTicket(url, clientId);
  if (!clientId) return null;
  const origin = originOf(url);
  const joined = members.get(clientId);
  if (!joined) {
    // Not (yet) a runtime client: ask it once; any answer makes it join its app.
    if (silent.has(clientId) || !anyAppKnows(origin)) return null;
    // An answer without a token still joined the client: then the app's own fresh token, if any
    // (as for the misses that waited behind this ask).
    return askCoalesced(null, url, clientId, origin).then((answer) => {
      const entry = answer || knownEntry(url, clientId, origin);
      return entry ? withAuth(request, entry, entry.app, clientId) : fetch(request);
    });
  }
  const owner = ownerOf(joined, url, origin);
  if (owner === null) return null;
  if (owner.entry && fresh(apps.get(owner.app), owner.entry)) return withAuth(request, owner.entry, owner.app, clientId);
  return askCoalesced(owner.app, url, clientId, origin).then((entry) => (entry ? withAuth(request, entry, entry.app, clientId) : fetch(request)));
}

// Misses of one app on one origin wait for the ask already in flight there, whose answer (a
// realm's token) usually covers them too: a page with 500 images of a realm the worker knows
// nothing about costs one round trip, not 500 (which the page could not answer within the
// budget). A miss the answer does not cover waits once more behind the next ask there (the
// first one may have gone unanswered: a page still loading), then asks for itself: at most
// three asks' budgets.
const asking = new Map();  // `${app}\n${origin}` (or the client, before it joined) -> the ask in flight

function knownEntry(url, clientId, origin) {  // the token route() would use now, if fresh
  const joined = members.get(clientId);
  const owner = joined ? ownerOf(joined, url, origin) : null;
  return owner && owner.entry && fresh(apps.get(owner.app), owner.entry) ? { ...owner.entry, app: owner.app } : null;
}

function askCoalesced(app, url, clientId, origin, rounds = 2) {
  const key = `${app === null ? `?${clientId}` : app}\n${origin}`;
  const ahead = asking.get(key);
  if (ahead && rounds > 0) {
    return ahead.then(() => knownEntry(url, clientId, origin) || askCoalesced(app, url, clientId, origin, rounds - 1));
  }
  const ask = askPageOnce(app, url, clientId);
  asking.set(key, ask);
  ask.finally(() => { if (asking.get(key) === ask) asking.delete(key); });
  return ask;
}

scope.addEventListener('fetch', (event) => {
  const request = event.request;
  if (request.method !== 'GET' && request.method !== 'HEAD') return;
  if (request.mode === 'navigate' || request.headers.has('Authorization')) return;
  const clientId = event.clientId;
  if (stateLoaded) {
    const response = route(request, clientId);
    if (response) event.respondWith(response);
  } else {
    event.respondWith(loaded.then(() => route(request, clientId) || fetch(request)));
  }
});

// Static routing (InstallEvent.addRoutes, Chromium 123+): navigations never wake the worker (its
// fetch handler leaves them alone anyway). Nothing else can be routed so without configuration:
// realms are learnt at run time and may be on any origin, the page's own included, so every other
// GET still reaches the fetch handler, which returns at once for a URL of no known realm. Other
// engines have no static routing: there every request reaches the handler.
scope.addEventListener('install', (event) => {
  const install = /** @type {any} */ (event);
  if (typeof install.addRoutes === 'function') {
    install.waitUntil(Promise.resolve(install.addRoutes([{ condition: { requestMode: 'navigate' }, source: 'network' }]))
      .catch((err) => console.warn('pyauth-web: static routes not added:', err)));
  }
  scope.skipWaiting();
});
scope.addEventListener('activate', (event) => event.waitUntil(followRecords(null).then(() => scope.clients.claim())));
