"""Which clients, apps and requests the service worker serves (issues 14 and 15, "Fix first").

- only clients that run the runtime (or joined with a ticket) get tokens;
- host writes to localStorage reach the worker; logout written by the host sticks;
- redirects of an authenticated request follow the realm's redirect mode;
- two apps on one origin (two tabs, or one page) never see each other's tokens;
- a worker deploy racing a logout never attaches the old token after clearTokens() resolves;
- clearTokens() works when the runtime could not start.
"""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path
from typing import Any

from playwright.sync_api import Page
from support import (
    HELLO_WITH_ACK,
    STATE_CACHE,
    STORAGE_KEY,
    Servers,
    open_app,
    put_record,
    serve_broken_bundle,
    session_record,
    stored_refresh,
    wait_controlled,
    wait_ready,
    wait_until,
)

from pyauth_web.record import SessionRecord

FETCH_STATUS = "async (url) => (await fetch(url, {cache: 'no-store'})).status"
# The `sub` of the token the realm saw (null when the request was not authenticated).
WHO = """async (url) => {
  const resp = await fetch(url, {cache: 'no-store'});
  return resp.status === 200 ? (await resp.json()).sub : null;
}"""
# Resolves when a fresh request to url is answered for `sub` (null: unauthenticated).
BECOMES = """async ([url, sub]) => {
  const resp = await fetch(url + '?n=' + Math.random(), {cache: 'no-store'});
  const who = resp.status === 200 ? (await resp.json()).sub : null;
  return who === sub;
}"""
WORKER_STATUS = """async ([url, ticket]) => {
  const worker = new Worker('/t/fetch-worker.js');
  const status = await new Promise((resolve) => { worker.onmessage = (e) => resolve(e.data); worker.postMessage({url, ticket}); });
  worker.terminate();
  return status;
}"""
SAVED_STATE = """async (name) => {
  const cache = await caches.open(name);
  const out = [];
  for (const req of await cache.keys()) out.push(await (await cache.match(req)).text());
  return out.join('\\n');
}"""


def open_keyed_app(page: Page, servers: Servers, key: str = STORAGE_KEY, realms: str = "") -> None:
    query = urllib.parse.urlencode({"key": key, "realms": realms or servers.realm})
    open_app(page, servers, f"app-key.html?{query}")


def set_token(page: Page, realm: str, token: str, api: str = "pyauthWeb") -> None:
    page.evaluate(f"([r, t]) => {api}.setToken(r, t)", [realm, token])


# -- 14.4: only runtime clients ---------------------------------------------------------------
def test_pages_and_workers_without_the_runtime_get_no_token(
    new_page: Any, servers: Servers, run_id: str, page_errors: list[str]
) -> None:
    app = new_page()
    open_keyed_app(app, servers)
    token = servers.token()
    set_token(app, servers.realm, token)
    plain = new_page()  # same origin, in the worker's scope, never loaded pyauth-web
    plain.goto(f"{servers.host}/t/plain.html?run={run_id}")
    wait_controlled(plain)
    plain.wait_for_load_state("load")  # its image and stylesheet requests have ended
    assert plain.evaluate(FETCH_STATUS, f"{servers.realm}img/plain-fetch-{run_id}") == 401
    dw_plain = f"{servers.realm}img/plain-worker-{run_id}"
    assert plain.evaluate(WORKER_STATUS, [dw_plain, None]) == 401
    assert servers.realm_auth(f"/img/plain-{run_id}") == [None]
    assert servers.realm_auth(f"/css/plain-{run_id}.css") == [None]
    assert servers.realm_auth(f"/img/plain-fetch-{run_id}") == [None]
    assert servers.realm_auth(dw_plain[len(servers.realm) - 1 :]) == [None]
    # The runtime page is served as before; its dedicated worker only with a ticket.
    assert app.evaluate(FETCH_STATUS, f"{servers.realm}img/app-{run_id}") == 200
    assert servers.realm_auth(f"/img/app-{run_id}") == [f"Bearer {token}"]
    no_ticket = f"{servers.realm}img/app-worker-{run_id}"
    assert app.evaluate(WORKER_STATUS, [no_ticket, None]) == 401
    assert servers.realm_auth(no_ticket[len(servers.realm) - 1 :]) == [None]
    ticket = app.evaluate("() => pyauthWeb.workerTicket()")
    with_ticket = f"{servers.realm}img/app-worker-ticket-{run_id}"
    assert app.evaluate(WORKER_STATUS, [with_ticket, ticket]) == 200
    assert servers.realm_auth(with_ticket[len(servers.realm) - 1 :]) == [f"Bearer {token}"]
    # A ticket is single-use: the plain page cannot reuse it.
    reuse = f"{servers.realm}img/plain-reuse-{run_id}"
    assert plain.evaluate(WORKER_STATUS, [reuse, ticket]) == 401
    assert servers.realm_auth(reuse[len(servers.realm) - 1 :]) == [None]
    assert page_errors == []


# -- 14.2: host writes to storage ------------------------------------------------------------
def test_host_storage_writes_reach_the_worker_and_logout_sticks(
    new_page: Any, servers: Servers, run_id: str
) -> None:
    tab_a, tab_b = new_page(), new_page()
    open_keyed_app(tab_a, servers)
    open_keyed_app(tab_b, servers)
    alice = servers.issuer.mint(servers.realm, 300, sub="alice")
    set_token(tab_a, servers.realm, alice)
    who = f"{servers.realm}api/who-{run_id}"
    assert tab_a.evaluate(WHO, who) == "alice"
    # The host switches the user by writing storage itself, in tab B.
    bob = servers.issuer.mint(servers.realm, 300, sub="bob")
    tab_b.evaluate("([k, v]) => localStorage.setItem(k, v)", [STORAGE_KEY, json.dumps({servers.realm: bob})])
    for tab in (tab_a, tab_b):
        tab.wait_for_function(BECOMES, arg=[who, "bob"], timeout=1000)
    assert tab_b.evaluate("(u) => pyauthWeb.getToken(u)", servers.realm) == bob
    # Then it logs out the same way.
    tab_b.evaluate("(k) => localStorage.removeItem(k)", STORAGE_KEY)
    for tab in (tab_a, tab_b):
        tab.wait_for_function(BECOMES, arg=[who, None], timeout=1000)
    assert tab_b.evaluate("(u) => pyauthWeb.getToken(u)", servers.realm) is None
    saved = tab_a.evaluate(SAVED_STATE, STATE_CACHE)
    assert alice not in saved and bob not in saved


def test_same_tab_host_write_is_followed_after_reload(
    page: Page, servers: Servers, run_id: str
) -> None:
    open_keyed_app(page, servers)
    set_token(page, servers.realm, servers.issuer.mint(servers.realm, 300, sub="alice"))
    who = f"{servers.realm}api/who-same-{run_id}"
    assert page.evaluate(WHO, who) == "alice"
    bob = servers.issuer.mint(servers.realm, 300, sub="bob")
    page.evaluate("([k, v]) => localStorage.setItem(k, v)", [STORAGE_KEY, json.dumps({servers.realm: bob})])
    page.evaluate("() => pyauthWeb.reload()")
    assert page.evaluate(WHO, who) == "bob"
    page.evaluate("(k) => localStorage.removeItem(k)", STORAGE_KEY)
    page.evaluate("() => pyauthWeb.reload()")
    assert page.evaluate(WHO, who) is None


# -- 14.5: redirects ---------------------------------------------------------------------------
def test_redirects_follow_the_realm_redirect_mode(
    page: Page, servers: Servers, run_id: str
) -> None:
    realm = servers.realm + "app/"
    open_keyed_app(page, servers, realms=realm)
    token = servers.token(realm=realm)
    set_token(page, realm, token)
    outside, inside = f"/app-evil/img/out-{run_id}", f"/app/img/in-{run_id}"
    go_out = f"{realm}go/out-{run_id}?to={outside}"
    go_in = f"{realm}go/in-{run_id}?to={inside}"
    result = "(u) => fetch(u, {cache: 'no-store'}).then((r) => r.status, () => 'error')"
    # Default for a path-scoped realm: a redirect fails; the sibling path never sees the token.
    assert page.evaluate(result, go_out) == "error"
    assert page.evaluate(result, go_in) == "error"  # the trade-off: same-realm redirects fail too
    # The same rule when the runtime sends the header itself (pyauthWeb.fetch, Python fetch).
    by_runtime = "(u) => pyauthWeb.fetch(u).then((r) => r.status, () => 'error')"
    assert page.evaluate(by_runtime, go_out + "&by=js") == "error"
    python_fetch = """async (u) => pyauthWeb.pyodide.runPythonAsync(`
import pyauth_web.browser.fetch as f
try:
    r = (await f.fetch(${JSON.stringify(u)})).status
except Exception:
    r = 'error'
r`)"""
    assert page.evaluate(python_fetch, go_out + "&by=py") == "error"
    assert all(auth is None for auth in servers.realm_auth(outside))
    assert f"Bearer {token}" in servers.realm_auth(f"/app/go/out-{run_id}")
    # A host that trusts every path of the origin lets redirects be followed.
    page.evaluate("(r) => pyauthWeb.configure({redirects: {[r]: 'follow'}})", realm)
    assert page.evaluate(result, go_in) == 200
    assert servers.realm_auth(inside) == [f"Bearer {token}"]
    assert page.evaluate(result, go_out) == 200
    assert servers.realm_auth(outside)[-1] == f"Bearer {token}"  # as documented for 'follow'
    # An origin-wide realm follows by default (a same-origin redirect stays inside it).
    origin_realm = servers.realm
    set_token(page, origin_realm, servers.token())
    page.evaluate("(r) => pyauthWeb.removeToken(r)", realm)
    assert page.evaluate(result, f"{origin_realm}x/go/o-{run_id}?to=/img/o-{run_id}") == 200


# -- 15.2: apps sharing an origin ---------------------------------------------------------------
def test_two_apps_in_two_tabs_keep_their_users_apart(
    new_page: Any, servers: Servers, run_id: str
) -> None:
    shared = servers.realm + "s/"
    own_a, own_b = servers.realm + "a/", servers.realm + "b/"
    tab_a, tab_b = new_page(), new_page()
    open_keyed_app(tab_a, servers, key="app-a", realms=f"{shared} {own_a}")
    open_keyed_app(tab_b, servers, key="app-b", realms=f"{shared} {own_b}")
    set_token(tab_a, shared, servers.issuer.mint(shared, 300, sub="alice"))
    set_token(tab_a, own_a, servers.issuer.mint(own_a, 300, sub="alice-a"))
    set_token(tab_b, shared, servers.issuer.mint(shared, 300, sub="bob"))
    set_token(tab_b, own_b, servers.issuer.mint(own_b, 300, sub="bob-b"))
    who = f"{shared}api/who-{run_id}"
    assert tab_a.evaluate(WHO, who) == "alice"
    assert tab_b.evaluate(WHO, who) == "bob"
    assert tab_a.evaluate(WHO, f"{own_a}api/x") == "alice-a"
    assert tab_b.evaluate(WHO, f"{own_b}api/x") == "bob-b"
    assert tab_a.evaluate(WHO, f"{own_b}api/x") is None  # the other app's realm: no token
    assert tab_b.evaluate(WHO, f"{own_a}api/x") is None
    # App A logs out: only A is affected, and B's next sync does not bring a token back to A.
    tab_a.evaluate("() => pyauthWeb.clearTokens()")
    assert tab_a.evaluate(WHO, who) is None
    assert tab_a.evaluate(WHO, f"{own_a}api/y") is None
    assert tab_b.evaluate(WHO, who) == "bob"
    assert tab_b.evaluate(WHO, f"{own_b}api/y") == "bob-b"
    set_token(tab_b, shared, servers.issuer.mint(shared, 300, sub="bob"))
    tab_b.reload()
    wait_ready(tab_b)
    assert tab_a.evaluate(WHO, who + "-2") is None
    assert tab_b.evaluate(WHO, who + "-2") == "bob"


def test_two_apps_in_one_page_keep_their_users_apart(page: Page, servers: Servers) -> None:
    realm_a, realm_b = servers.realm + "a/", servers.realm + "b/"
    query = urllib.parse.urlencode({"realmA": realm_a, "realmB": realm_b})
    page.goto(f"{servers.host}/t/two-apps.html?{query}")
    page.wait_for_function("() => window.appA && window.appB", timeout=30_000)
    page.evaluate("() => Promise.all([appA.ready, appB.ready])")
    wait_controlled(page)
    set_token(page, realm_a, servers.issuer.mint(realm_a, 300, sub="alice"), api="appA")
    set_token(page, realm_b, servers.issuer.mint(realm_b, 300, sub="bob"), api="appB")
    assert page.evaluate(WHO, f"{realm_a}api/1") == "alice"
    assert page.evaluate(WHO, f"{realm_b}api/1") == "bob"
    page.evaluate("() => appA.clearTokens()")
    assert page.evaluate(WHO, f"{realm_a}api/2") is None
    assert page.evaluate(WHO, f"{realm_b}api/2") == "bob"
    # With the worker's memory gone, each app still answers only for its own realm.
    page.evaluate("(c) => caches.delete(c)", STATE_CACHE)
    assert page.evaluate(WHO, f"{realm_b}api/3") == "bob"
    assert page.evaluate(WHO, f"{realm_a}api/3") is None


# -- 15.3: a deploy racing a logout -----------------------------------------------------------
# The new worker has started (and read the saved state) when `updatefound` fires; the logout
# lands while it installs, and must reach it too.
DEPLOY_THEN_LOGOUT = """async ([url, version]) => {
  const reg = await navigator.serviceWorker.getRegistration();
  const found = new Promise((resolve) => reg.addEventListener('updatefound', resolve, {once: true}));
  navigator.serviceWorker.register('/sw.js?v=' + version);
  await found;
  await pyauthWeb.clearTokens();
  return (await fetch(url, {cache: 'no-store'})).status;
}"""


def test_worker_deploy_racing_logout_never_sends_the_old_token(
    new_page: Any, servers: Servers, run_id: str
) -> None:
    for i in range(4):
        page = new_page()
        open_keyed_app(page, servers)
        token = servers.issuer.mint(servers.realm, 300, sub=f"user-{i}")
        set_token(page, servers.realm, token)
        path = f"/img/deploy-{i}-{run_id}"
        version = f"{run_id}-{i}"
        assert page.evaluate(DEPLOY_THEN_LOGOUT, [servers.realm + path[1:], version]) == 401
        assert servers.realm_auth(path) == [None], f"round {i}"
        # Once the app's page is gone the new worker takes over; a client of the app that it
        # serves (one that joined by saying hello) must get no token from it.
        page.close()
        probe = new_page()
        probe.goto(f"{servers.host}/t/plain.html?run=deploy-{i}-{run_id}")
        probe.wait_for_function(
            "(v) => navigator.serviceWorker.controller && navigator.serviceWorker.controller.scriptURL.endsWith(v)",
            arg=f"v={version}",
        )
        assert probe.evaluate(HELLO_WITH_ACK, STORAGE_KEY)
        assert probe.evaluate(FETCH_STATUS, f"{servers.realm}img/after-{i}-{run_id}") == 401
        assert servers.realm_auth(f"/img/after-{i}-{run_id}") == [None]
        assert probe.evaluate(SAVED_STATE, STATE_CACHE).count(token) == 0
        probe.close()


# -- 14.3: logout when the runtime could not start -----------------------------------------------
def test_clear_tokens_works_when_the_runtime_failed_to_start(
    tmp_path: Path, bundle_dir: Path, page: Page, servers: Servers, run_id: str
) -> None:
    host, _ = serve_broken_bundle(servers, bundle_dir, tmp_path)
    token = servers.token()
    page.goto(host + "/t/app.html")
    page.wait_for_function("() => !!window.pyauthWeb")
    assert page.evaluate("() => pyauthWeb.ready.then(() => null, (e) => e.message)")
    wait_controlled(page)
    # A session from before (a previous runtime synced the worker; storage holds it).
    page.evaluate(
        """async ([k, realm, token]) => {
          localStorage.setItem(k, JSON.stringify({[realm]: token}));
          localStorage.setItem(k + ':refresh', JSON.stringify({[realm]: 'rt'}));
          const reg = await navigator.serviceWorker.ready;
          await new Promise((resolve) => {
            navigator.serviceWorker.addEventListener('message', (e) => { if (e.data && e.data.ack === 'probe') resolve(); });
            reg.active.postMessage({type: 'sync-tokens', app: k, ack: 'probe', tokens: {[realm]: token}, expires: {}, realms: [realm], skew: 60});
          });
        }""",
        [STORAGE_KEY, servers.realm, token],
    )
    # ... and its session record, as the runtime (Python) writes it.
    record = SessionRecord()
    record.set_session(servers.realm, token, "rt-before", 1.0)
    put_record(page, record)
    assert page.evaluate(FETCH_STATUS, f"{servers.realm}img/before-{run_id}") == 200
    page.evaluate("() => pyauthWeb.clearTokens()")
    assert page.evaluate("(k) => [localStorage.getItem(k), localStorage.getItem(k + ':refresh')]", STORAGE_KEY) == [None, None]
    # The loader's own logout is the record's (read here with the runtime's rules): the session
    # emptied, the logout mark at the new version, what else it held kept.
    after = session_record(page)
    assert (after.tokens, after.refresh.realms(), after.since) == ({}, [], {})
    assert after.version > record.version and after.cleared == after.version
    assert after.mirrors == record.mirrors
    assert page.evaluate(FETCH_STATUS, f"{servers.realm}img/after-{run_id}") == 401
    assert servers.realm_auth(f"/img/after-{run_id}") == [None]
    assert token not in page.evaluate(SAVED_STATE, STATE_CACHE)


# -- found by review: host writes while no runtime tab is open -------------------------------
def test_host_writes_made_without_a_runtime_tab_never_bring_back_the_old_user(
    new_page: Any, servers: Servers, run_id: str
) -> None:
    app = new_page()
    open_keyed_app(app, servers)
    alice = servers.issuer.mint(servers.realm, 300, sub="alice")
    set_token(app, servers.realm, alice)
    app.close()  # no runtime tab is open from here on
    bob = servers.issuer.mint(servers.realm, 300, sub="bob")
    for step, write in enumerate((
        "([k, v]) => localStorage.setItem(k, v)",  # the host's own login page switches user
        "([k]) => localStorage.removeItem(k)",  # the host's own logout page
    )):
        host_page = new_page()
        host_page.goto(f"{servers.host}/t/plain.html?run=w{step}-{run_id}")
        host_page.evaluate(write, [STORAGE_KEY, json.dumps({servers.realm: bob})])
        host_page.close()
        tab = new_page()
        run = f"{step}-{run_id}"
        tab.goto(f"{servers.host}/t/first-paint.html?run={run}")
        tab.wait_for_function("() => [...document.images].every((i) => i.complete)")
        sent = [a for i in range(10) for a in servers.realm_auth(f"/img/fp-{i}-{run}")]
        assert f"Bearer {alice}" not in sent, f"step {step}: {sent.count(f'Bearer {alice}')} of {len(sent)}"
        wait_ready(tab)
        assert alice not in tab.evaluate(SAVED_STATE, STATE_CACHE)
        tab.close()


def test_api_calls_settle_when_no_worker_covers_the_page(page: Page, servers: Servers) -> None:
    page.goto(f"{servers.host}/t/no-sw.html")
    wait_ready(page)
    timed = """async ([fn, realm, token]) => {
      const t0 = performance.now();
      const calls = {set: () => pyauthWeb.setToken(realm, token), clear: () => pyauthWeb.clearTokens(),
                     reload: () => pyauthWeb.reload()};
      const done = await Promise.race([calls[fn]().then(() => 'settled', (e) => 'rejected: ' + e.message),
                                       new Promise((r) => setTimeout(() => r('pending'), 4000))]);
      return [done, performance.now() - t0];
    }"""
    for fn in ("set", "reload", "clear"):
        done, ms = page.evaluate(timed, [fn, servers.realm, servers.token()])
        assert done == "settled" and ms < 2500, (fn, done, ms)


def test_boot_failure_lets_waiting_worker_requests_fall_through_at_once(
    tmp_path: Path, bundle_dir: Path, page: Page, servers: Servers, run_id: str
) -> None:
    host, _ = serve_broken_bundle(servers, bundle_dir, tmp_path)
    page.goto(host + "/t/app.html")
    wait_controlled(page)
    page.reload()  # controlled and joined from the start; boot fails again
    result = page.evaluate(
        """async (url) => {
          const request = fetch(url, {cache: 'no-store'}).then((r) => r.status);
          const failedAt = await pyauthWeb.ready.then(() => null, () => performance.now());
          const status = await request;
          return [status, failedAt, performance.now()];
        }""",
        f"{servers.realm}img/bootfail-{run_id}",
    )
    status, failed_at, done_at = result
    assert status == 401 and failed_at is not None
    assert done_at - failed_at < 1000, result  # not the 3 s pending budget


def test_host_logout_written_to_storage_removes_the_refresh_token(
    new_page: Any, servers: Servers
) -> None:
    tab_a, tab_b = new_page(), new_page()
    open_keyed_app(tab_a, servers)
    open_keyed_app(tab_b, servers)
    tab_a.evaluate(
        "(e) => pyauthWeb.configure({oauth: {tokenEndpoint: e, clientId: 'spa'}})",
        servers.host + "/oauth-token",
    )
    tab_a.evaluate("([r, t]) => pyauthWeb.setToken(r, t, 'rt-alice-0')", [servers.realm, servers.token()])
    # Another tab sees the session a moment later (Chromium delivers localStorage asynchronously).
    tab_b.wait_for_function("(k) => localStorage.getItem(k) !== null", arg=STORAGE_KEY, timeout=5_000)
    assert (stored_refresh(tab_b) or {})[servers.realm]["refresh_token"] == "rt-alice-0"
    tab_b.evaluate("(k) => localStorage.removeItem(k)", STORAGE_KEY)  # the host logs out itself
    wait_until(lambda: stored_refresh(tab_a) is None, 2, "the refresh token to go with the session")
