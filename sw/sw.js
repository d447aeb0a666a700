/* pyauth-web service worker: adds `Authorization: Bearer` to GET/HEAD requests for known realms.
 *
 * Tokens come from the page (the Python runtime) as messages. On a miss the worker asks the
 * page over a MessageChannel (200 ms budget, up to 3000 ms once the page says "pending"),
 * one round trip per URL at a time, and falls through to the unauthenticated request when
 * nobody answers. The message names below are the one place on this side; the Python side's
 * copy is pyauth_web/protocol.py, and a unit test checks that they agree.
 */
'use strict';

const MSG = Object.freeze({
  SYNC_TOKENS: 'sync-tokens',
  SET_REALM_TOKEN: 'set-realm-token',
  REMOVE_REALM_TOKEN: 'remove-realm-token',
  CLEAR_TOKENS: 'clear-tokens',
  REQUEST_REALM_TOKEN: 'request-realm-token',
  PENDING: 'pending',
});

const ANSWER_BUDGET_MS = 200;
const PENDING_BUDGET_MS = 3000;
const ASK_OTHERS_AFTER_MS = 100;

// realm URL (normalized, ends with '/') -> {token, exp (s since epoch, or null)}
const tokens = new Map();
// Origins of the realms the worker was told about (configured, or holding a token): only these
// get the on-miss round trip. While it knows none (cold start) it asks for every origin.
const knownOrigins = new Set();
let skewSeconds = 60;
// No resurrection: every clear/remove takes a sequence number; a reply to a request that
// started before the clear/remove of its realm is dropped.
let seq = 0;
let clearedAt = 0;
const removedAt = new Map();
// Single-flight per URL: URL -> Promise<{realmURL, token, exp} | null>
const inflight = new Map();

const isStr = (v) => typeof v === 'string' && v.length > 0;
const isExp = (v) => v === null || v === undefined || (typeof v === 'number' && Number.isFinite(v));
const originOf = (url) => { try { return new URL(url).origin; } catch { return null; } };

function isRealm(url) {
  if (!isStr(url) || !url.endsWith('/')) return false;
  try {
    const u = new URL(url);
    return (u.protocol === 'https:' || u.protocol === 'http:') && u.href === url;
  } catch { return false; }
}

function fresh(entry) {
  return entry.exp == null || Date.now() / 1000 < entry.exp - skewSeconds;
}

function putToken(realmURL, token, exp) {
  if (!isRealm(realmURL) || !isStr(token) || !isExp(exp)) return false;
  tokens.set(realmURL, { token, exp: exp ?? null });
  knownOrigins.add(new URL(realmURL).origin);
  return true;
}

function realmFor(url) {
  let best = null;
  for (const realm of tokens.keys()) {
    if (url.startsWith(realm) && (best === null || realm.length > best.length)) best = realm;
  }
  return best;
}

function setSkew(v) {
  if (typeof v === 'number' && Number.isFinite(v) && v >= 0) skewSeconds = v;
}

function addRealmOrigins(realms) {
  if (!Array.isArray(realms)) return;
  for (const realm of realms) if (isRealm(realm)) knownOrigins.add(new URL(realm).origin);
}

function applyMessage(msg) {
  switch (msg.type) {
    case MSG.SYNC_TOKENS: {
      if (!msg.tokens || typeof msg.tokens !== 'object') return;
      setSkew(msg.skew);
      addRealmOrigins(msg.realms);
      const expires = (msg.expires && typeof msg.expires === 'object') ? msg.expires : {};
      // A full sync is authoritative: realms missing from it are gone.
      for (const realm of tokens.keys()) {
        if (!(realm in msg.tokens)) { tokens.delete(realm); removedAt.set(realm, ++seq); }
      }
      for (const [realm, token] of Object.entries(msg.tokens)) putToken(realm, token, expires[realm]);
      break;
    }
    case MSG.SET_REALM_TOKEN:
      setSkew(msg.skew);
      putToken(msg.realmURL, msg.token, msg.exp);
      break;
    case MSG.REMOVE_REALM_TOKEN:
      if (isStr(msg.realmURL)) { tokens.delete(msg.realmURL); removedAt.set(msg.realmURL, ++seq); }
      break;
    case MSG.CLEAR_TOKENS:
      tokens.clear();
      clearedAt = ++seq;
      break;
    default:
      return;
  }
  save();
}

// The state survives worker restarts (Chromium stops idle workers), so most requests after a
// restart need no round trip. It holds nothing localStorage does not already hold.
const STATE_CACHE = 'pyauth-web-state-v1';
const STATE_KEY = new URL('__pyauth-web/state', self.registration.scope).href;
let saving = Promise.resolve();

function save() {
  const state = JSON.stringify({ tokens: Object.fromEntries(tokens), origins: [...knownOrigins], skew: skewSeconds });
  saving = saving
    .then(() => caches.open(STATE_CACHE))
    .then((cache) => cache.put(STATE_KEY, new Response(state, { headers: { 'Content-Type': 'application/json' } })))
    .catch(() => {});
  return saving;
}

let stateLoaded = false;
const loaded = caches.open(STATE_CACHE)
  .then((cache) => cache.match(STATE_KEY))
  .then((resp) => resp && resp.json())
  .then((state) => {
    if (!state || typeof state !== 'object') return;
    setSkew(state.skew);
    for (const origin of Array.isArray(state.origins) ? state.origins : []) {
      if (typeof origin === 'string') knownOrigins.add(origin);
    }
    for (const [realm, e] of Object.entries(state.tokens || {})) if (e) putToken(realm, e.token, e.exp);
  })
  .catch(() => { /* an unreadable saved state is dropped */ })
  .finally(() => { stateLoaded = true; });

self.addEventListener('message', (event) => {
  const msg = event.data;
  if (!msg || typeof msg !== 'object') return;
  event.waitUntil(loaded.then(() => { applyMessage(msg); return saving; }));
});

// Ask one client; resolves with its final answer, or never (the caller races a deadline).
function askClient(client, requestURL, onPending) {
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = (ev) => {
      const reply = ev.data;
      if (reply && reply.type === MSG.PENDING) { onPending(); return; }
      channel.port1.close();
      resolve(reply && typeof reply === 'object' ? reply : {});
    };
    client.postMessage({ type: MSG.REQUEST_REALM_TOKEN, requestURL }, [channel.port2]);
  });
}

async function askPage(requestURL, clientId) {
  const startSeq = seq;
  const t0 = Date.now();
  const initiator = clientId ? await self.clients.get(clientId) : null;
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
    const ask = (client) => askClient(client, requestURL, onPending).then(finish);
    const askOthers = async () => {
      for (const c of await self.clients.matchAll({ type: 'window' })) {
        if (!initiator || c.id !== initiator.id) ask(c);
      }
    };
    deadline = setTimeout(() => finish(null), ANSWER_BUDGET_MS);
    if (initiator) {
      ask(initiator);
      others = setTimeout(askOthers, ASK_OTHERS_AFTER_MS);
    } else {
      askOthers();
    }
  });
  if (!reply || !isRealm(reply.realmURL) || !isStr(reply.token) || !isExp(reply.exp)) return null;
  if (!requestURL.startsWith(reply.realmURL)) return null;  // a token only for its own realm
  if (clearedAt > startSeq || (removedAt.get(reply.realmURL) || 0) > startSeq) return null;
  const known = tokens.get(reply.realmURL);
  putToken(reply.realmURL, reply.token, reply.exp);
  if (!known || known.token !== reply.token) save();
  return reply;
}

function askPageOnce(requestURL, clientId) {
  let p = inflight.get(requestURL);
  if (!p) {
    p = askPage(requestURL, clientId).catch(() => null).finally(() => inflight.delete(requestURL));
    inflight.set(requestURL, p);
  }
  return p;
}

function withAuth(request, token) {
  const headers = new Headers(request.headers);
  headers.set('Authorization', `Bearer ${token}`);
  return fetch(new Request(request.url, {
    method: request.method,
    headers,
    mode: 'cors',
    credentials: 'same-origin',
    cache: request.cache === 'only-if-cached' ? 'default' : request.cache,
    redirect: request.redirect,
    referrer: request.referrer,
    referrerPolicy: request.referrerPolicy,
    integrity: request.integrity,
  }));
}

// The response for a GET/HEAD that may need a token, or null to leave the request alone.
function route(request, clientId) {
  const url = request.url;
  const realm = realmFor(url);
  if (realm !== null && fresh(tokens.get(realm))) return withAuth(request, tokens.get(realm).token);
  // Origin gating: ask only for origins of realms we were told about, or at cold start.
  const origin = originOf(url);
  if (origin === null || !/^https?:/.test(url)) return null;
  if (knownOrigins.size > 0 && !knownOrigins.has(origin)) return null;
  return askPageOnce(url, clientId).then((reply) => (reply ? withAuth(request, reply.token) : fetch(request)));
}

self.addEventListener('fetch', (event) => {
  const request = event.request;
  if (request.method !== 'GET' && request.method !== 'HEAD') return;
  if (request.mode === 'navigate' || request.headers.has('Authorization')) return;
  const clientId = event.clientId || event.resultingClientId;
  if (stateLoaded) {
    const response = route(request, clientId);
    if (response) event.respondWith(response);
  } else {
    event.respondWith(loaded.then(() => route(request, clientId) || fetch(request)));
  }
});

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));
