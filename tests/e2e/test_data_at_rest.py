"""Issue 10 item 4: data at rest. While signed in, the access token is only where the README
says (the session record in IndexedDB, its localStorage mirror, the worker's saved state; the
refresh token in the record only) and never in the memory snapshot; after
``clearTokens()`` no token string — access or refresh — is left in any Cache Storage entry (the
snapshot included), localStorage, sessionStorage or IndexedDB."""

from __future__ import annotations

import json

from playwright.sync_api import Page
from support import LOAD_IMAGE, STORAGE_KEY, Servers, wait_controlled, wait_ready

from pyauth_web.protocol import RECORD_DB, RECORD_STORE, STATE_CACHE

# Where each needle occurs, searched in every place the origin can keep data. Cache bodies are
# read as bytes (latin-1, so any byte sequence decodes), gzip ones unpacked: the 31 MB snapshot
# is searched too.
SCAN = """async (needles) => {
  const found = [];
  const look = (where, text) => {
    for (const n of needles) if (text.includes(n)) found.push([n.slice(0, 12), where]);
  };
  for (const [name, store] of [['localStorage', localStorage], ['sessionStorage', sessionStorage]]) {
    for (let i = 0; i < store.length; i++) {
      const key = store.key(i);
      look(`${name}[${key}]`, key + '\\n' + store.getItem(key));
    }
  }
  const latin1 = new TextDecoder('latin1');
  const caches_ = [];
  for (const name of await caches.keys()) {
    const cache = await caches.open(name);
    for (const request of await cache.keys()) {
      let body = await (await cache.match(request)).arrayBuffer();
      const head = new Uint8Array(body, 0, 2);
      if (head[0] === 0x1f && head[1] === 0x8b) {  // gzip (the stored snapshot): search it unpacked
        const plain = new Blob([body]).stream().pipeThrough(new DecompressionStream('gzip'));
        body = await new Response(plain).arrayBuffer();
      }
      caches_.push([name, request.url, body.byteLength]);
      look(`caches[${name}] ${request.url}`, request.url + '\\n' + latin1.decode(body));
    }
  }
  const dbs = [];
  for (const info of await indexedDB.databases()) {
    const db = await new Promise((ok, fail) => {
      const r = indexedDB.open(info.name); r.onsuccess = () => ok(r.result); r.onerror = () => fail(r.error);
    });
    for (const storeName of db.objectStoreNames) {
      const values = await new Promise((ok, fail) => {
        const r = db.transaction(storeName).objectStore(storeName).getAll();
        r.onsuccess = () => ok(r.result); r.onerror = () => fail(r.error);
      });
      dbs.push([info.name, storeName, values.length]);
      look(`indexedDB[${info.name}/${storeName}]`, JSON.stringify(values));
    }
    db.close();
  }
  return { found, caches: caches_, dbs };
}"""
IMG = LOAD_IMAGE


def test_after_logout_no_token_is_left_anywhere_the_origin_stores_data(
    page: Page, servers: Servers, run_id: str
) -> None:
    token = servers.token()
    refresh_token = f"rt-{run_id}-never-at-rest-after-logout"
    # Signed in before the first boot: the memory snapshot is made with a token in storage.
    page.goto(f"{servers.host}/t/plain.html")
    page.evaluate("([k, v]) => localStorage.setItem(k, v)",
                  [STORAGE_KEY, json.dumps({servers.realm: token})])
    page.goto(f"{servers.host}/t/app.html")
    wait_ready(page)
    wait_controlled(page)
    page.evaluate(
        "(e) => pyauthWeb.configure({oauth: {tokenEndpoint: e, clientId: 'spa'}})",
        servers.host + "/token",
    )
    page.evaluate("([r, t, rt]) => pyauthWeb.setToken(r, t, rt)",
                  [servers.realm, token, refresh_token])
    page.evaluate("() => sessionStorage.setItem('host-state', 'unrelated')")
    assert page.evaluate(IMG, f"{servers.realm}img/at-rest-{run_id}") is True
    auth = [e["auth"] for e in servers.realm_log.for_path(f"/img/at-rest-{run_id}")]
    assert f"Bearer {token}" in auth  # through the worker, which saved its state

    signed_in = page.evaluate(SCAN, [token, refresh_token])
    places = {where for _, where in signed_in["found"]}
    # The scan finds what is there (so it can fail), and only where the README says.
    record = f"indexedDB[{RECORD_DB}/{RECORD_STORE}]"
    assert {w for n, w in signed_in["found"] if n == refresh_token[:12]} == {record}
    assert {w for n, w in signed_in["found"] if n == token[:12] and not w.startswith("caches[")} \
        == {f"localStorage[{STORAGE_KEY}]", record}
    assert any(w.startswith(f"caches[{STATE_CACHE}]") for w in places), places
    snapshots = [c for c in signed_in["caches"] if c[0] != STATE_CACHE]
    assert snapshots and max(size for *_, size in snapshots) > 1_000_000  # the snapshot is there
    assert not [w for w in places if w.startswith("caches[") and STATE_CACHE not in w], places
    assert not [w for w in places if w.startswith(("sessionStorage", "indexedDB")) and w != record]

    page.evaluate("() => pyauthWeb.clearTokens()")
    after = page.evaluate(SCAN, [token, refresh_token])
    assert after["found"] == [], after["found"]
    # And after a reload (the worker restored from its saved state, a new runtime): still none.
    page.reload()
    wait_ready(page)
    assert page.evaluate(SCAN, [token, refresh_token])["found"] == []
