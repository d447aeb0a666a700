"""One order for the session, seen by every tab and worker (issue 22, "Fix first").

A logout must stick whatever runs at the same moment: a sibling tab's refresh whose answer
arrives a few milliseconds before it, a deploy of the worker, a worker stopped half-way through
it. And five tabs crossing one expiry make one refresh, with the plain refresh URL and with
the OAuth refresher at the real provider. Each race is repeated over a sweep of delays.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from oidc_op import CLIENT_ID, running_provider, sign_in
from playwright.sync_api import BrowserContext, Page
from support import (
    HELLO_WITH_ACK,
    LOAD_IMAGE,
    PAGES,
    STALE_TTL,
    STORAGE_KEY,
    Endpoint,
    Servers,
    deployable_copy,
    open_app,
    put_record,
    session_record,
    stop_service_worker,
    stored_refresh,
    wait_controlled,
    wait_ready,
    wait_until,
)

from pyauth_web.demo.servers import host_app
from pyauth_web.oauth import session_digest
from pyauth_web.protocol import RECORD_CHANNEL, RECORD_DB, STATE_CACHE

# Everything the origin keeps at rest that could hold a token: localStorage, Cache Storage (not
# the memory snapshot) and every IndexedDB store, as one text to search.
AT_REST = """async () => {
  const out = [];
  for (let i = 0; i < localStorage.length; i++) {
    const k = localStorage.key(i);
    out.push(`localStorage ${k}=${localStorage.getItem(k)}`);
  }
  for (const name of await caches.keys()) {
    if (name.startsWith('pyauth-web-snapshot')) continue;
    const cache = await caches.open(name);
    for (const req of await cache.keys()) out.push(`${name} ${req.url} ${await (await cache.match(req)).text()}`);
  }
  const request = (r) => new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result); r.onerror = () => reject(r.error); });
  for (const {name} of await indexedDB.databases()) {
    const db = await request(indexedDB.open(name));
    for (const store of Array.from(db.objectStoreNames)) {
      const all = await request(db.transaction(store).objectStore(store).getAll());
      out.push(`${name}/${store} ${JSON.stringify(all)}`);
    }
    db.close();
  }
  return out.join('\\n');
}"""
START_GET = """(u) => { window.__got = null; pyauthWeb.getToken(u).then(
  (t) => { window.__got = {ok: true, value: t}; },
  (e) => { window.__got = {ok: false, value: String(e && e.message)}; }); }"""
STORED = "(k) => localStorage.getItem(k)"


def holds(condition: Callable[[], bool], seconds: float, what: str) -> None:
    """``condition`` stays true for ``seconds`` (checked every 50 ms): nothing comes back."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert condition(), what
        time.sleep(0.05)


def image_auth(servers: Servers, page: Page, path: str) -> list[str | None]:
    page.evaluate(LOAD_IMAGE, servers.realm + path.lstrip("/"))
    return servers.realm_auth(path)


class HeldAnswers(Endpoint):
    """:class:`support.Endpoint` (the refresh URL ``/refresh`` and the OAuth token endpoint
    ``/token``, rotating), whose answers wait (at most 10 s) until a page fetches ``/release``:
    that page then knows when the answer left, and on loopback when it arrives."""

    def __init__(self, servers: Servers) -> None:
        self._gate: asyncio.Event | None = None
        self.arrived = 0  # POSTs that reached the endpoint
        self.issued: list[str] = []  # every token and refresh token it handed out
        super().__init__(servers)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self._gate is None:
            self._gate = asyncio.Event()
        if request.path == "/release":
            self._gate.set()
            return web.Response(text="released", headers=self._cors(request))
        if request.method == "POST":
            self.arrived += 1
            try:
                await asyncio.wait_for(self._gate.wait(), 10)
            except TimeoutError:
                pass
            self._gate.clear()
        response = await super().handle(request)
        if isinstance(response, web.Response) and response.body:
            reply = json.loads(bytes(response.body))  # type: ignore[arg-type]
            self.issued += [reply[k] for k in ("token", "access_token", "refresh_token") if k in reply]
        return response


RELEASE_THEN_LOGOUT = """async ([release, delay]) => {
  await fetch(release, {cache: 'no-store'});
  if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
  await pyauthWeb.clearTokens();
}"""


@pytest.mark.parametrize("refresher", ["refresh-url", "oauth"])
def test_a_sibling_tab_s_refresh_never_undoes_a_logout(
    new_page: Any, servers: Servers, run_id: str, page_errors: list[str], refresher: str
) -> None:
    """Tab A refreshes a stale token; tab B logs out 0-23 ms after A's answer arrives. After
    B's clearTokens() resolved, no tab holds a token, none comes back, nothing is at rest, and
    neither tab's realm images carry one (with the OAuth refresher: nor a refresh token)."""
    endpoint = HeldAnswers(servers)
    a, b = new_page(), new_page()
    for tab in (a, b):
        if refresher == "refresh-url":
            open_app(tab, servers, f"refresh.html?refresh={endpoint.origin}/refresh")
            tab.evaluate("() => pyauthWeb.configure({retry: {attempts: 1}})")
        else:
            open_app(tab, servers)
            tab.evaluate("(o) => pyauthWeb.configure(o)", {
                "oauth": {"tokenEndpoint": f"{endpoint.origin}/token", "clientId": "spa"},
                "retry": {"attempts": 1}})
    undone: list[str] = []
    for delay in range(24):
        user = f"u{delay}-{run_id}"
        stale = servers.issuer.mint(servers.realm, STALE_TTL, sub=user)
        arrived = endpoint.arrived  # (the proactive timer may start the refresh first)
        if refresher == "oauth":
            endpoint.grants[f"rt-{user}"] = user
            a.evaluate("([r, t, rt]) => pyauthWeb.setToken(r, t, rt)", [servers.realm, stale, f"rt-{user}"])
        else:
            a.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [servers.realm, stale])
        a.evaluate(START_GET, servers.realm)
        wait_until(lambda n=arrived: endpoint.arrived > n, 10, "tab A's refresh at the endpoint")
        b.evaluate(RELEASE_THEN_LOGOUT, [f"{endpoint.origin}/release", delay])
        a.wait_for_function("() => window.__got !== null", timeout=10_000)
        secrets = [stale, f"rt-{user}", *endpoint.issued]

        def clean(secrets: list[str] = secrets) -> bool:
            stored = [tab.evaluate(STORED, STORAGE_KEY) or "" for tab in (a, b)]
            return not any(s in text for text in stored for s in secrets)

        try:
            holds(clean, 0.5, "a token came back to localStorage")
            for tab, name in ((a, "a"), (b, "b")):
                assert tab.evaluate("(u) => pyauthWeb.getToken(u)", servers.realm) is None
                seen = image_auth(servers, tab, f"/img/order-{refresher}-{name}-{delay}-{run_id}")
                assert seen and all(auth is None for auth in seen), seen
            rest = b.evaluate(AT_REST)
            kept = [s for s in secrets if s in rest]
            assert not kept, f"at rest after the logout: {kept}"
        except AssertionError as exc:
            undone.append(f"{delay} ms: {exc}".splitlines()[0])
    assert undone == [], f"{len(undone)} of 24 rounds undid the logout: {undone}"
    assert page_errors == []


# -- a worker stopped mid-logout -----------------------------------------------------------------
START_LOGOUT = """() => { window.__cleared = null;
  pyauthWeb.clearTokens().then(() => { window.__cleared = true; }); }"""


def test_a_worker_stopped_during_a_logout_comes_back_without_the_token(
    context: BrowserContext, page: Page, servers: Servers, run_id: str, page_errors: list[str]
) -> None:
    """clearTokens(), then 0-20 ms later the browser stops the worker (as it stops idle ones):
    the worker that starts again holds no token, none is saved, and clearTokens() was
    acknowledged (not given up on at its 2 s bound)."""
    warnings: list[str] = []
    page.on("console", lambda m: warnings.append(m.text) if m.type == "warning" else None)
    open_app(page, servers)
    cdp = context.new_cdp_session(page)
    cdp.send("ServiceWorker.enable")
    came_back: list[str] = []
    for round_ in range(42):
        delay = round_ % 21
        token = servers.issuer.mint(servers.realm, 300, sub=f"stop-{round_}")
        page.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [servers.realm, token])
        before = f"/img/stop-before-{round_}-{run_id}"
        assert image_auth(servers, page, before) == [f"Bearer {token}"]
        page.evaluate(START_LOGOUT)
        time.sleep(delay / 1000)  # the race's parameter: how far into the logout the stop comes
        cdp.send("ServiceWorker.stopAllWorkers")
        page.wait_for_function("() => window.__cleared", timeout=5_000)
        after = f"/img/stop-after-{round_}-{run_id}"
        seen = image_auth(servers, page, after)
        rest = page.evaluate(AT_REST)
        if any(auth is not None for auth in seen) or token in rest:
            came_back.append(f"{delay} ms: sent {seen}, at rest {token in rest}")
    assert came_back == [], f"{len(came_back)} of 42 rounds: {came_back}"
    unacked = [w for w in warnings if "did not acknowledge" in w]
    assert unacked == [], unacked
    assert page_errors == []


# -- a deploy racing a logout -------------------------------------------------------------------
class Deploys:
    """A host origin serving a copy of the bundle whose ``sw.js`` the test rewrites (a deploy).
    After :meth:`arm`, the next request for ``sw.js`` is answered only when a page fetches
    ``/release-sw`` (or after 10 s): the page decides when the deploy's script arrives."""

    def __init__(self, servers: Servers, bundle_dir: Path, root: Path) -> None:
        self.sw = deployable_copy(bundle_dir, root)
        self.armed = False
        self._gate: asyncio.Event | None = None
        app = host_app(root, issuer=servers.issuer, page_vars={"REALM": servers.realm},
                       extra_dirs={"t": PAGES})

        @web.middleware
        async def hold(request: web.Request, handler: Any) -> web.StreamResponse:
            if self._gate is None:
                self._gate = asyncio.Event()
            if request.path == "/release-sw":
                self._gate.set()
                return web.Response(text="released", headers={"Cache-Control": "no-store"})
            if request.path == "/sw.js" and self.armed:
                self.armed = False
                try:
                    await asyncio.wait_for(self._gate.wait(), 10)
                except TimeoutError:
                    pass
                self._gate.clear()
            return await handler(request)

        app.middlewares.append(hold)
        self.origin = servers.thread.serve(app)

    def deploy(self, version: str) -> None:
        """A new ``sw.js`` (a comment more), whose first request is held."""
        self.sw.write_text(self.sw.read_text() + f"\n// deploy {version}\n")
        self.armed = True


DEPLOY_THEN_LOGOUT = """async (delay) => {
  navigator.serviceWorker.getRegistration().then((reg) => reg.update()).catch(() => {});
  await fetch('/release-sw', {cache: 'no-store'});  // the deploy's sw.js arrives now
  if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
  await pyauthWeb.clearTokens();
}"""
SETTLED = """async () => { const reg = await navigator.serviceWorker.getRegistration();
  return !!reg && !reg.installing && !reg.waiting && navigator.serviceWorker.controller === reg.active; }"""
STATUS = "(u) => fetch(u, {cache: 'no-store'}).then((r) => r.status)"


@pytest.mark.timeout(240)
def test_a_deploy_racing_a_logout_never_brings_the_token_back(
    new_page: Any, servers: Servers, bundle_dir: Path, tmp_path: Path, run_id: str,
    page_errors: list[str],
) -> None:
    """Tab A logs out while a deploy's sw.js arrives 0-23 ms before (the browser's update check,
    held by the server until then), then closes; the new worker takes over. Tab B joined the app
    without the runtime (as a ticket-joined worker does: it never says hello on a takeover, so
    nothing but the worker's own state decides): none of its requests through the new worker
    carries the token, and nothing holds it at rest."""
    site = Deploys(servers, bundle_dir, tmp_path / "site")
    b = new_page()
    b.goto(f"{site.origin}/t/bare.html")
    wait_controlled(b)
    assert b.evaluate(HELLO_WITH_ACK, STORAGE_KEY)  # B joins the app
    sent: list[str] = []
    delays = range(24)
    for round_, delay in enumerate(delays):
        b.wait_for_function(SETTLED, timeout=15_000)
        a = new_page()
        open_app(a, servers, "app.html", host=site.origin)
        token = servers.issuer.mint(servers.realm, 300, sub=f"deploy-{round_}")
        a.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [servers.realm, token])
        before = f"/img/deploy-before-{round_}-{run_id}"
        assert b.evaluate(STATUS, servers.realm + before[1:]) == 200, round_  # served to B
        site.deploy(f"{run_id}-{round_}")
        a.evaluate(DEPLOY_THEN_LOGOUT, delay)
        a.close()
        b.wait_for_function(SETTLED, timeout=15_000)  # the new worker took over, B is its client
        paths = [f"/img/deploy-{round_}-{i}-{run_id}" for i in range(3)]
        seen = [auth for p in paths for auth in image_auth(servers, b, p)]
        rest = b.evaluate(AT_REST)
        if any(auth is not None for auth in seen) or token in rest:
            sent.append(f"{delay} ms: {seen.count(f'Bearer {token}')} of {len(seen)} with the "
                        f"token, at rest {token in rest}")
    assert sent == [], f"{len(sent)} of {len(delays)} rounds: {sent}"
    assert page_errors == []


SAVED_STATE = """async (name) => {
  const cache = await caches.open(name);
  const [request] = await cache.keys();
  return request ? [request.url, await (await cache.match(request)).text()] : null;
}"""
PUT_STATE = """async ([name, url, text]) => {
  const cache = await caches.open(name);
  await cache.put(url, new Response(text, {headers: {'Content-Type': 'application/json'}}));
}"""


def test_a_worker_restores_no_token_its_saved_copy_holds_from_before_a_logout(
    context: BrowserContext, page: Page, servers: Servers, run_id: str, page_errors: list[str]
) -> None:
    """The worker's saved copy still holds the token (it was stopped before it saved the
    logout, or it is a new version that read the copy before the logout was saved and was not
    told of it): restarted, it holds nothing the session record does not."""
    open_app(page, servers)
    token = servers.token()
    page.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [servers.realm, token])
    assert image_auth(servers, page, f"/img/copy-before-{run_id}") == [f"Bearer {token}"]
    saved = page.evaluate(SAVED_STATE, STATE_CACHE)
    assert saved and token in saved[1]
    page.evaluate("() => pyauthWeb.clearTokens()")
    page.evaluate(PUT_STATE, [STATE_CACHE, *saved])  # the copy from before the logout
    stop_service_worker(context, page)
    for i in range(3):
        assert image_auth(servers, page, f"/img/copy-after-{i}-{run_id}") == [None]
    assert page_errors == []


def test_a_worker_no_page_told_of_a_logout_drops_the_token_at_the_record_s_notice(
    new_page: Any, servers: Servers, run_id: str, page_errors: list[str]
) -> None:
    """A logout committed to the session record while this worker was never messaged (a version
    installed as the page listed the workers): the notice every logout posts reaches it, and a
    client that never says hello again (as a worker joined by ticket) gets no token from it."""
    a, b = new_page(), new_page()
    open_app(a, servers)
    b.goto(f"{servers.host}/t/bare.html")
    wait_controlled(b)
    assert b.evaluate(HELLO_WITH_ACK, STORAGE_KEY)  # B joins the app without the runtime
    token = servers.token()
    a.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [servers.realm, token])
    assert image_auth(servers, b, f"/img/notice-before-{run_id}") == [f"Bearer {token}"]
    record = session_record(a)
    a.close()  # no runtime tab is left to sync the worker
    record.logout(time.time() * 1000)
    put_record(b, record)  # the logout, in the record only ...
    b.evaluate("([ch, app, v]) => { const c = new BroadcastChannel(ch); "
               "c.postMessage({type: 'record', app, version: v, logout: true}); c.close(); }",
               [RECORD_CHANNEL, STORAGE_KEY, record.version])  # ... and its notice
    tries = iter(range(1000))
    wait_until(lambda: image_auth(servers, b, f"/img/notice-{next(tries)}-{run_id}") == [None],
               5, "the worker to drop the token")  # at once, in fact: one image or two
    for i in range(3):  # and for good
        assert image_auth(servers, b, f"/img/notice-after-{i}-{run_id}") == [None]
    assert page_errors == []


# -- five tabs, one expiry, many runs -----------------------------------------------------------
@pytest.fixture
def cpu_load() -> Iterator[None]:
    """One busy process (of this machine's two cores) for the test's duration."""
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        burner.kill()
        burner.wait(timeout=10)


RUNS = 10
SAME_TOKEN = """async ([u, t]) => (await pyauthWeb.getToken(u)) === t"""


def cross_expiry(context: BrowserContext, tabs: list[Page], realm: str, stale: str) -> str:
    """The five tabs hold ``stale`` (150 s left); then every tab's clock jumps 2 min at once, past
    the skew margin: all five decide to refresh at the same moment. (Playwright's ``page.clock``
    is the context's clock: one jump moves every tab. Jumping once per tab, as the issue's probe
    did, moves them 10 min and fires every deadline of a refresh still in flight.) Returns the
    token they end on."""
    if tabs[0].evaluate("(u) => pyauthWeb.getToken(u)", realm) != stale:
        tabs[0].evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [realm, stale])
    for tab in tabs:
        tab.wait_for_function(SAME_TOKEN, arg=[realm, stale], timeout=10_000)
    context.clock.fast_forward("02:00")
    tabs[0].wait_for_function(f"async ([u, t]) => !({SAME_TOKEN})([u, t])", arg=[realm, stale],
                              timeout=20_000)
    new = tabs[0].evaluate("(u) => pyauthWeb.getToken(u)", realm)
    for tab in tabs:
        tab.wait_for_function(SAME_TOKEN, arg=[realm, new], timeout=20_000)
    return str(new)


def test_five_tabs_refresh_once_per_expiry_run_after_run(
    context: BrowserContext, new_page: Any, servers: Servers, cpu_load: None
) -> None:
    """Issue 22 item 5 with the refresh URL: ten runs, each one expiry for five tabs: exactly one
    refresh request per run, all tabs on the new token."""
    context.clock.install()
    tabs = [new_page() for _ in range(5)]
    for tab in tabs:
        tab.goto(f"{servers.host}/t/refresh.html?refresh=/refresh")
        wait_ready(tab)
    saved_ttl, servers.issuer.ttl = servers.issuer.ttl, 3600  # outlives the jump
    counts = []
    try:
        for _ in range(RUNS):
            context.clock.set_system_time(time.time())  # back to now: each run starts afresh
            since = time.time()
            cross_expiry(context, tabs, servers.realm, servers.token(ttl=150))
            time.sleep(1.0)  # a quiet second: a second refresh would show here
            counts.append(len(servers.issuer.refreshes(since)))
    finally:
        servers.issuer.ttl = saved_ttl
    assert counts == [1] * RUNS, counts
    assert all(tab.evaluate("() => window.__authErrors.length") == 0 for tab in tabs)


def test_five_tabs_refresh_once_per_expiry_at_the_real_provider(
    context: BrowserContext, new_page: Any, servers: Servers, cpu_load: None
) -> None:
    """Issue 22 item 5 with the OAuth refresher and the real provider's rotation (reusing a
    refresh token revokes the grant): ten runs, each a new sign-in whose 150 s token five tabs
    cross: exactly one refresh grant per run, never an error or a revocation."""
    with running_provider(f"{servers.host}/t/callback.html", servers.realm, 150,
                          refresh_ttl=3600) as op:
        context.clock.install()
        tabs = [new_page() for _ in range(5)]
        for tab in tabs:
            tab.goto(f"{servers.host}/t/app.html")
            wait_ready(tab)
            tab.evaluate("([e, c]) => pyauthWeb.configure({oauth: {tokenEndpoint: e, clientId: c}})",
                         [f"{op.issuer}/token", CLIENT_ID])
        counts = []
        for _ in range(RUNS):
            context.clock.set_system_time(time.time())
            context.clear_cookies()  # the provider's login session: a new sign-in each run
            tokens = sign_in(new_page(external="block"), op, servers)
            since = time.time()
            tabs[0].evaluate("([r, t, rt]) => pyauthWeb.setToken(r, t, rt)",
                             [servers.realm, tokens["access_token"], tokens["refresh_token"]])
            cross_expiry(context, tabs, servers.realm, tokens["access_token"])
            time.sleep(1.0)  # a quiet second: a second refresh would show here
            counts.append(len([e for e in op.grants("grant.success", since)
                               if e.get("grant_type") == "refresh_token"]))
            assert op.grants("grant.error", since) == [], op.events
            assert op.grants("grant.revoked", since) == [], op.events
        assert counts == [1] * RUNS, counts
        assert all(tab.evaluate("() => window.__authErrors.length") == 0 for tab in tabs)


def test_a_tab_whose_storage_shows_the_replaced_token_takes_the_sibling_s_refresh(
    new_page: Any, servers: Servers, page_errors: list[str]
) -> None:
    """Storage reaches other tabs late (Chromium: milliseconds, more under load), so a tab can
    take the refresh lock while its localStorage still shows the token a sibling's refresh just
    replaced. Here the stale value is written back in that tab itself, so no storage event ever
    corrects it: the tab still uses the sibling's token at once, with no second refresh
    request (with rotating refresh tokens, a second one would be a reuse), and storage is put
    right for every tab."""
    a, b = new_page(), new_page()
    for tab in (a, b):
        open_app(tab, servers, "refresh.html?refresh=/refresh")
    stale = servers.token(ttl=STALE_TTL)
    since = time.time()
    a.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [servers.realm, stale])  # refreshed at once
    fresh = a.evaluate("(u) => pyauthWeb.getToken(u)", servers.realm)
    for tab in (a, b):
        tab.wait_for_function("([u, t]) => pyauthWeb.getToken(u).then((v) => v === t)",
                              arg=[servers.realm, fresh], timeout=5_000)
    assert fresh != stale and len(servers.issuer.refreshes(since)) == 1
    replaced = json.dumps({servers.realm: stale})  # what storage held before the refresh
    b.evaluate("([k, v]) => localStorage.setItem(k, v)", [STORAGE_KEY, replaced])
    t0 = time.monotonic()
    assert b.evaluate("(u) => pyauthWeb.getToken(u)", servers.realm) == fresh
    took = time.monotonic() - t0
    assert len(servers.issuer.refreshes(since)) == 1, "refreshed again"
    assert a.evaluate("(u) => pyauthWeb.getToken(u)", servers.realm) == fresh
    for tab in (a, b):
        tab.wait_for_function("([k, t]) => (localStorage.getItem(k) || '').includes(t)",
                              arg=[STORAGE_KEY, fresh], timeout=5_000)
    assert len(servers.issuer.refreshes(since)) == 1
    assert took < 1.0, took  # no waiting for a storage event that never comes
    assert page_errors == []


def test_an_older_bundle_s_sign_in_is_refreshed_with_the_refresh_token_it_left_in_storage(
    new_page: Any, servers: Servers, page_errors: list[str]
) -> None:
    """A tab of the bundle before the session record signs in: it writes the session to
    localStorage and its refresh token beside it (``storageKey + ':refresh'``). A tab of this
    bundle takes both into the record (the refresh token paired with that session), removes the
    old key, and refreshes with it: no sign-in lost across a deploy."""
    endpoint = Endpoint(servers)
    endpoint.grants["rt-old-bundle"] = "carol"
    tab, old = new_page(), new_page()
    open_app(tab, servers)
    tab.evaluate("(o) => pyauthWeb.configure(o)", {
        "oauth": {"tokenEndpoint": f"{endpoint.origin}/token", "clientId": "spa"},
        "retry": {"attempts": 1}})
    old.goto(f"{servers.host}/t/plain.html?run=old-bundle")  # (writes as an older runtime did)
    stale = servers.issuer.mint(servers.realm, STALE_TTL, sub="carol")
    old.evaluate("([k, session, refresh]) => { localStorage.setItem(k, session); "
                 "localStorage.setItem(k + ':refresh', refresh); }",
                 [STORAGE_KEY, json.dumps({servers.realm: stale}),
                  json.dumps({servers.realm: {"refresh_token": "rt-old-bundle",
                                              "session": session_digest(stale)}})])
    fresh = tab.evaluate("(u) => pyauthWeb.getToken(u)", servers.realm)
    assert fresh and fresh != stale
    assert endpoint.refresh_tokens_received() == ["rt-old-bundle"]
    assert (stored_refresh(tab) or {})[servers.realm]["refresh_token"].startswith("rt-carol-")
    assert tab.evaluate("(k) => localStorage.getItem(k + ':refresh')", STORAGE_KEY) is None
    assert page_errors == []


def test_a_wiped_session_database_or_a_forged_notice_never_stops_the_worker_for_good(
    page: Page, servers: Servers, run_id: str, page_errors: list[str]
) -> None:
    """The host deletes the session database at logout (a common clean-up: the record starts
    anew), or script posts a notice with a version no record will reach: the next sign-in's
    images still carry the token (the worker takes its order from the records it reads)."""
    open_app(page, servers)
    for _ in range(3):
        page.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [servers.realm, servers.token()])
    page.evaluate("() => pyauthWeb.clearTokens()")
    page.evaluate("(db) => new Promise((resolve) => { const r = indexedDB.deleteDatabase(db); "
                  "r.onsuccess = r.onerror = r.onblocked = () => resolve(true); })", RECORD_DB)
    token = servers.token()
    page.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [servers.realm, token])
    assert image_auth(servers, page, f"/img/wiped-{run_id}") == [f"Bearer {token}"]
    page.evaluate("([ch, app]) => { const c = new BroadcastChannel(ch); c.postMessage("
                  "{type: 'record', app, version: Number.MAX_SAFE_INTEGER, logout: true}); c.close(); }",
                  [RECORD_CHANNEL, STORAGE_KEY])
    token = servers.token()
    page.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [servers.realm, token])
    # (a miss is asked of the page: whichever comes first, notice or sign-in, the image has it)
    assert image_auth(servers, page, f"/img/forged-{run_id}") == [f"Bearer {token}"]
    assert page_errors == []
