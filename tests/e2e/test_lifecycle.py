"""Issue 3: token lifecycle across tabs, in real Chromium (Web Locks, storage events)."""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web
from playwright.sync_api import BrowserContext, Page
from support import SKEW, STALE_TTL, STORAGE_KEY, Servers, wait_controlled, wait_ready

GET_TOKEN = "(u) => pyauthWeb.getToken(u)"


def open_tabs(new_page: Any, url: str, n: int) -> list[Page]:
    tabs = [new_page() for _ in range(n)]
    for tab in tabs:
        tab.goto(url)
    for tab in tabs:
        wait_ready(tab)
    return tabs


def test_five_tabs_refresh_once_across_an_expiry(
    context: BrowserContext, new_page: Any, servers: Servers, run_id: str
) -> None:
    context.clock.install()
    url = f"{servers.host}/t/refresh.html?refresh=/refresh"
    first = new_page()
    first.goto(url)
    wait_ready(first)
    wait_controlled(first)
    old = servers.token(ttl=3600)
    first.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [servers.realm, old])
    tabs = [first, *open_tabs(new_page, url, 4)]
    saved_ttl, servers.issuer.ttl = servers.issuer.ttl, 6 * 3600  # outlives the jump below
    try:
        since = time.time()
        context.clock.fast_forward("01:00:00")  # every tab's token is now expired
        for tab in tabs:
            tab.wait_for_function(
                "async ([u, old]) => { const t = await pyauthWeb.getToken(u); return t && t !== old; }",
                arg=[servers.realm, old],
                timeout=20_000,
            )
    finally:
        servers.issuer.ttl = saved_ttl
    assert len(servers.issuer.refreshes(since)) == 1
    tokens = {tab.evaluate(GET_TOKEN, servers.realm) for tab in tabs}
    assert len(tokens) == 1 and old not in tokens
    new = tokens.pop()
    # The service worker uses the new token, for every tab.
    for i, tab in enumerate(tabs):
        path = f"img/five-{i}-{run_id}"
        assert tab.evaluate("(u) => fetch(u, {cache: 'no-store'}).then((r) => r.status)",
                            servers.realm + path) == 200
        assert [e["auth"] for e in servers.realm_log.for_path("/" + path)] == [f"Bearer {new}"]
    assert all(tab.evaluate("() => window.__authErrors.length") == 0 for tab in tabs)


def test_refresher_down_gives_one_auth_error_per_tab(
    context: BrowserContext, new_page: Any, servers: Servers, page_errors: list[str]
) -> None:
    hits: list[float] = []
    origin = ""

    async def flaky(request: web.Request) -> web.Response:
        hits.append(time.time())
        if len(hits) >= 2:  # after the second 503 the server goes away: connection refused
            servers.thread.loop.create_task(servers.thread.stop(origin))
        return web.json_response({"error": "unavailable"}, status=503,
                                 headers={"Access-Control-Allow-Origin": "*"})

    app = web.Application()
    app.router.add_route("*", "/refresh", flaky)
    origin = servers.thread.serve(app)

    probe = new_page()
    probe.goto(servers.host + "/t/app.html")
    # An expiring token (inside the default skew in ~1 s) is already stored when the tabs load.
    soon = servers.token(ttl=SKEW + 1)
    probe.evaluate("([k, v]) => localStorage.setItem(k, v)",
                   [STORAGE_KEY, json.dumps({servers.realm: soon})])
    probe.close()
    tabs = open_tabs(new_page, f"{servers.host}/t/refresh.html?refresh={origin}/refresh", 3)
    for tab in tabs:
        tab.wait_for_function("() => window.__authErrors.length > 0", timeout=20_000)
    # Quiescent: every tab has ended its episode; nothing retries any more.
    for tab in tabs:
        tab.wait_for_function(
            "async () => (await pyauthWeb.state()).tokens.every((t) => t.failed)", timeout=10_000
        )
    errors = [tab.evaluate("() => window.__authErrors") for tab in tabs]
    assert all(len(e) == 1 for e in errors), errors
    assert all(e[0]["realmURL"] == servers.realm and e[0]["recoverable"] is False for e in errors)
    assert len(hits) == 2  # one tab refreshed (503, 503, refused); the others heard of it
    assert hits[1] - hits[0] <= 0.5 + 0.2  # first backoff: at most base (0.5 s), jittered
    # getToken rejects clearly and does not retry; no unhandled rejections anywhere.
    message = tabs[0].evaluate(
        "(u) => pyauthWeb.getToken(u).then(() => null, (e) => e.message)", servers.realm
    )
    assert message and "refresh failed" in message
    assert len(hits) == 2
    # A reconfigure (an app calling configure() again, with the same refresher) is not a new
    # token: the realm stays failed, nothing is refreshed, nothing is reported twice.
    tabs[0].evaluate("(u) => pyauthWeb.configure({refreshURL: u})", f"{origin}/refresh")
    assert tabs[0].evaluate("async () => (await pyauthWeb.state()).tokens.every((t) => t.failed)")
    message = tabs[0].evaluate(
        "(u) => pyauthWeb.getToken(u).then(() => null, (e) => e.message)", servers.realm
    )
    assert message and "refresh failed" in message
    assert all(tab.evaluate("() => window.__unhandled") == [] for tab in tabs)
    assert all(tab.evaluate("() => window.__authErrors.length") == 1 for tab in tabs)
    assert page_errors == []


def test_corrupt_storage_at_load_keeps_good_tokens(
    page: Page, servers: Servers, run_id: str, page_errors: list[str]
) -> None:
    page.goto(servers.host + "/t/app.html")
    wait_ready(page)
    wait_controlled(page)
    good = servers.token()
    corrupt = {servers.realm: good, "not a url": good, servers.other: "not-a-jwt",
               servers.realm + "x/": 42}
    page.evaluate("([k, v]) => localStorage.setItem(k, v)", [STORAGE_KEY, json.dumps(corrupt)])
    page.reload()
    wait_ready(page)
    assert page.evaluate(GET_TOKEN, servers.realm + "a") == good
    warnings = [e for e in page.evaluate("() => window.__events") if e["kind"] == "warning"]
    assert len(warnings) == 1 and "dropped" in warnings[0]["message"]
    path = f"img/corrupt-{run_id}"
    assert page.evaluate("(u) => fetch(u, {cache: 'no-store'}).then((r) => r.status)",
                         servers.realm + path) == 200
    for value in ("{not json", "[1, 2]", '"a string"'):
        page.evaluate("([k, v]) => localStorage.setItem(k, v)", [STORAGE_KEY, value])
        page.reload()
        wait_ready(page)
        assert page.evaluate(GET_TOKEN, servers.realm) is None
    assert page_errors == []


def test_host_callback_refresher_is_single_flight(page: Page, servers: Servers) -> None:
    page.goto(servers.host + "/t/app.html")
    wait_ready(page)
    page.evaluate(
        """() => {
          window.__calls = 0;
          return pyauthWeb.configure({refresh: async (realmURL) => {
            window.__calls += 1;
            const resp = await fetch('/token', {method: 'POST', body: JSON.stringify({realm: realmURL})});
            return (await resp.json()).token;
          }});
        }"""
    )
    stale = servers.token(ttl=STALE_TTL)  # inside the default skew: every caller needs a refresh
    page.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [servers.realm, stale])
    tokens = page.evaluate(
        "(u) => Promise.all(Array.from({length: 5}, () => pyauthWeb.getToken(u)))", servers.realm
    )
    assert len(set(tokens)) == 1 and tokens[0] != stale
    assert page.evaluate("() => window.__calls") == 1
