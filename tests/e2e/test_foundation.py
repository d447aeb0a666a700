"""Issue 2: the Python runtime answers the service worker's token requests, in real Chromium."""

from __future__ import annotations

import json
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page
from support import (
    COUNT_TOKEN_REQUESTS,
    HELLO_WITH_ACK,
    STALE_TTL,
    STORAGE_KEY,
    Servers,
    auth_seen,
    open_app,
    stop_service_worker,
    wait_controlled,
)

FETCH_STATUS = "async (url) => (await fetch(url, {cache: 'no-store'})).status"
TIMED_FETCH = """async (url) => {
  const t0 = performance.now();
  const status = (await fetch(url, {cache: 'no-store'})).status;
  return {status, ms: performance.now() - t0};
}"""


def bearer(servers: Servers, path: str, log: str = "realm") -> list[str | None]:
    return auth_seen(servers.realm_log if log == "realm" else servers.other_log, path)


def signed_in_then_worker_stopped(
    context: BrowserContext, page: Page, servers: Servers, *, forget: bool
) -> str:
    """Open the app, set a token, then stop the worker (``forget``: and drop its saved
    state); count the worker's token requests from here on. Returns the token."""
    open_app(page, servers)
    token = servers.token()
    page.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [servers.realm, token])
    stop_service_worker(context, page, forget=forget)
    page.evaluate(COUNT_TOKEN_REQUESTS)
    return token


def test_token_only_in_local_storage_loads_images_on_first_paint(
    page: Page, servers: Servers, run_id: str, page_errors: list[str]
) -> None:
    open_app(page, servers)  # installs the worker; no token anywhere yet
    token = servers.token()
    # The host wrote the session itself: the worker was never told about this token.
    page.evaluate(
        "([k, v]) => localStorage.setItem(k, v)", [STORAGE_KEY, json.dumps({servers.realm: token})]
    )
    page.goto(f"{servers.host}/t/first-paint.html?run={run_id}")
    page.wait_for_function("() => [...document.images].every((i) => i.complete)", timeout=15_000)
    loaded = page.evaluate("() => [...document.images].filter((i) => i.naturalWidth > 0).length")
    assert loaded == 10
    for i in range(10):
        assert bearer(servers, f"/img/fp-{i}-{run_id}") == [f"Bearer {token}"]
    assert page_errors == []


def test_a_worker_that_knows_nothing_asks_once_for_many_images_of_a_realm(
    context: BrowserContext, page: Page, servers: Servers, run_id: str, page_errors: list[str]
) -> None:
    """Misses on one origin wait for the ask in flight there: 150 images of a realm the worker
    has forgotten cost one round trip (each used to ask; at 500 a third of them ran out of the
    page's budget and got 401)."""
    n = 150
    token = signed_in_then_worker_stopped(context, page, servers, forget=True)
    page.add_init_script(f"({COUNT_TOKEN_REQUESTS})()")
    page.goto(f"{servers.host}/t/many-images.html?n={n}&run={run_id}")
    page.wait_for_function("() => [...document.images].every((i) => i.complete)", timeout=30_000)
    loaded = page.evaluate("() => [...document.images].filter((i) => i.naturalWidth > 0).length")
    assert loaded == n
    assert all(bearer(servers, f"/img/many-{i}-{run_id}") == [f"Bearer {token}"] for i in range(n))
    asked = [u for u in page.evaluate("() => window.__tokenRequests") if u.startswith(servers.realm)]
    assert 1 <= len(asked) <= 2, asked
    assert page_errors == []


@pytest.mark.parametrize(
    "forget",
    [False, True],
    ids=["restart-keeps-tokens-without-asking", "cold-start-asks-the-page"],
)
def test_worker_restart(
    context: BrowserContext, page: Page, servers: Servers, run_id: str, forget: bool
) -> None:
    # Memory gone with the worker; its saved state survives, unless forgotten too (a cold start:
    # the worker knows no realm at all, and asks the page).
    token = signed_in_then_worker_stopped(context, page, servers, forget=forget)
    url = f"{servers.realm}img/restart-{forget}-{run_id}"
    assert page.evaluate(FETCH_STATUS, url) == 200
    assert page.evaluate("() => window.__tokenRequests") == ([url] if forget else [])
    assert bearer(servers, f"/img/restart-{forget}-{run_id}") == [f"Bearer {token}"]


def test_twenty_concurrent_misses_share_one_round_trip(
    context: BrowserContext, page: Page, servers: Servers, run_id: str
) -> None:
    token = signed_in_then_worker_stopped(context, page, servers, forget=True)
    url = f"{servers.realm}img/burst-{run_id}"
    statuses = page.evaluate(
        "async (url) => Promise.all(Array.from({length: 20}, () => "
        "fetch(url, {cache: 'no-store'}).then((r) => r.status)))",
        url,
    )
    assert statuses == [200] * 20
    assert page.evaluate("() => window.__tokenRequests") == [url]
    assert bearer(servers, f"/img/burst-{run_id}") == [f"Bearer {token}"] * 20


def test_worker_asks_another_window_when_the_initiator_is_silent(
    context: BrowserContext, new_page: Any, servers: Servers, run_id: str
) -> None:
    runtime_tab = new_page()
    open_app(runtime_tab, servers)
    token = servers.token()
    runtime_tab.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [servers.realm, token])
    silent_tab = new_page()
    silent_tab.goto(servers.host + "/t/bare.html")  # controlled, runs no runtime
    wait_controlled(silent_tab)
    stop_service_worker(context, silent_tab, forget=True)  # the worker must ask
    # The silent tab joined the app (as a runtime tab whose main thread is busy would have),
    # but never answers: the worker asks the other window of the same app.
    assert silent_tab.evaluate(HELLO_WITH_ACK, STORAGE_KEY)
    runtime_tab.evaluate(COUNT_TOKEN_REQUESTS)
    url = f"{servers.realm}img/other-window-{run_id}"
    assert silent_tab.evaluate(FETCH_STATUS, url) == 200
    assert runtime_tab.evaluate("() => window.__tokenRequests") == [url]
    assert bearer(servers, f"/img/other-window-{run_id}") == [f"Bearer {token}"]


def test_unanswered_request_falls_through_after_200ms(
    page: Page, servers: Servers, run_id: str
) -> None:
    page.goto(servers.host + "/t/bare.html")  # worker, but no runtime: nobody answers
    wait_controlled(page)
    result = page.evaluate(TIMED_FETCH, f"{servers.realm}img/silent-{run_id}")
    assert result["status"] == 401  # the original, unauthenticated request went out
    assert 150 <= result["ms"] < 1500, result
    assert bearer(servers, f"/img/silent-{run_id}") == [None]


def test_pending_extends_the_wait_but_never_hangs(
    page: Page, servers: Servers, run_id: str
) -> None:
    page.goto(servers.host + "/t/bare.html")
    wait_controlled(page)
    page.evaluate(
        "(app) => { window.respond = (e) => e.ports[0].postMessage({type: 'pending', app}); }",
        STORAGE_KEY,
    )
    result = page.evaluate(TIMED_FETCH, f"{servers.realm}img/pending-{run_id}")
    assert result["status"] == 401
    assert 2700 <= result["ms"] < 5000, result


def test_non_realm_origin_never_gets_a_token(
    context: BrowserContext, page: Page, servers: Servers, run_id: str
) -> None:
    open_app(page, servers)
    page.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [servers.realm, servers.token()])
    other = f"{servers.other}img/foreign-{run_id}"
    assert page.evaluate(FETCH_STATUS, other) == 401
    # Cold start: the worker knows no realm and asks the page; the page answers nothing.
    stop_service_worker(context, page, forget=True)
    cold = f"{servers.other}img/foreign-cold-{run_id}"
    assert page.evaluate(FETCH_STATUS, cold) == 401
    assert bearer(servers, f"/img/foreign-{run_id}", "other") == [None]
    assert bearer(servers, f"/img/foreign-cold-{run_id}", "other") == [None]


def test_worker_refuses_a_token_for_another_realm(
    page: Page, servers: Servers, run_id: str
) -> None:
    """A (buggy or hostile) page reply naming a realm the URL is not under is not used."""
    page.goto(servers.host + "/t/bare.html")
    wait_controlled(page)
    page.evaluate(
        "([realm, token, app]) => { window.respond = (e) => "
        "e.ports[0].postMessage({app, realmURL: realm, token, exp: null}); }",
        [servers.realm, servers.token(), STORAGE_KEY],
    )
    assert page.evaluate(FETCH_STATUS, f"{servers.other}img/wrong-{run_id}") == 401
    assert bearer(servers, f"/img/wrong-{run_id}", "other") == [None]


def test_clear_tokens_racing_a_late_reply_does_not_resurrect(
    page: Page, servers: Servers, run_id: str
) -> None:
    page.goto(servers.host + "/t/bare.html")
    wait_controlled(page)
    token = servers.token()
    # The responder says "pending", and answers with the token only after 300 ms; meanwhile
    # the page logs out. Once logged out it answers {}.
    page.evaluate(
        """([realm, token, app]) => {
          window.loggedOut = false;
          window.respond = (e) => {
            const port = e.ports[0];
            if (window.loggedOut) { port.postMessage({app}); return; }
            port.postMessage({type: 'pending', app});
            setTimeout(() => port.postMessage({app, realmURL: realm, token, exp: null}), 300);
          };
        }""",
        [servers.realm, token, STORAGE_KEY],
    )
    first, second = f"{servers.realm}img/race-1-{run_id}", f"{servers.realm}img/race-2-{run_id}"
    statuses = page.evaluate(
        """async ([first, second, app]) => {
          const reg = await navigator.serviceWorker.ready;
          const late = fetch(first, {cache: 'no-store'});
          await new Promise((r) => setTimeout(r, 100));
          window.loggedOut = true;
          reg.active.postMessage({type: 'clear-tokens', app});
          const s1 = (await late).status;
          const s2 = (await fetch(second, {cache: 'no-store'})).status;
          return [s1, s2];
        }""",
        [first, second, STORAGE_KEY],
    )
    assert statuses == [401, 401]
    assert bearer(servers, f"/img/race-1-{run_id}") == [None]
    assert bearer(servers, f"/img/race-2-{run_id}") == [None]


def test_logout_clears_storage_and_worker(
    context: BrowserContext, page: Page, servers: Servers, run_id: str
) -> None:
    open_app(page, servers)
    page.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [servers.realm, servers.token()])
    assert page.evaluate(FETCH_STATUS, f"{servers.realm}img/in-{run_id}") == 200
    page.evaluate("() => pyauthWeb.clearTokens()")
    assert page.evaluate("(k) => localStorage.getItem(k)", STORAGE_KEY) is None
    assert page.evaluate("(u) => pyauthWeb.getToken(u)", servers.realm) is None
    assert page.evaluate(FETCH_STATUS, f"{servers.realm}img/out-{run_id}") == 401
    stop_service_worker(context, page)  # logout sticks across a worker restart too
    assert page.evaluate(FETCH_STATUS, f"{servers.realm}img/out2-{run_id}") == 401
    assert bearer(servers, f"/img/out-{run_id}") == [None]
    assert bearer(servers, f"/img/out2-{run_id}") == [None]


def test_get_token_longest_prefix_and_skew(page: Page, servers: Servers) -> None:
    open_app(page, servers)
    outer, inner = servers.realm, servers.realm + "api/"
    t_outer, t_inner = servers.token(realm=outer), servers.token(realm=inner)
    near_expiry = servers.token(ttl=STALE_TTL, realm=servers.realm + "img/")  # inside the default skew
    page.evaluate(
        "async (pairs) => { for (const [r, t] of pairs) await pyauthWeb.setToken(r, t); }",
        [[outer, t_outer], [inner, t_inner], [servers.realm + "img/", near_expiry]],
    )
    get = "(u) => pyauthWeb.getToken(u)"
    assert page.evaluate(get, servers.realm + "api/x") == t_inner
    assert page.evaluate(get, servers.realm + "other") == t_outer
    assert page.evaluate(get, servers.realm + "img/a") is None  # within skew: treated as missing
    assert page.evaluate(get, servers.other + "x") is None
    stored = json.loads(page.evaluate("(k) => localStorage.getItem(k)", STORAGE_KEY))
    assert set(stored) == {outer, inner, servers.realm + "img/"}


def test_bad_input_is_refused_cleanly(page: Page, servers: Servers, page_errors: list[str]) -> None:
    open_app(page, servers)
    err = page.evaluate(
        "() => pyauthWeb.setToken('ftp://nope/', 'x').then(() => null, (e) => e.message)"
    )
    assert err and "realm" in err.lower() and "Traceback" not in err
    err = page.evaluate(
        "(r) => pyauthWeb.setToken(r, 'not-a-jwt').then(() => null, (e) => e.message)",
        servers.realm,
    )
    assert err and "JWT" in err
    # Malformed messages to the runtime are ignored; a well-formed one still gets an answer.
    reply = page.evaluate(
        """async (url) => {
          const sw = navigator.serviceWorker;
          for (const data of [42, null, {type: 'request-realm-token'}, {type: 'request-realm-token', requestURL: 7}]) {
            const ch = new MessageChannel();
            sw.dispatchEvent(new MessageEvent('message', {data, ports: [ch.port2]}));
          }
          const ch = new MessageChannel();
          const answer = new Promise((resolve) => { ch.port1.onmessage = (e) => resolve(e.data); });
          sw.dispatchEvent(new MessageEvent('message', {data: {type: 'request-realm-token', requestURL: url}, ports: [ch.port2]}));
          return answer;
        }""",
        servers.other + "x",
    )
    assert reply == {"app": STORAGE_KEY}  # no token, and which app answered
    assert page.evaluate("() => pyauthWeb.state()")["counters"]["ignored_messages"] >= 4
    assert page_errors == []
