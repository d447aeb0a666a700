"""Refresh credentials (issue 15, "Fix first"): logout removes them whatever the tab configured,
a new session never inherits the previous one's, they never follow a redirect, and the URLs
that receive them are checked when configured."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from playwright.sync_api import Page
from support import STALE_TTL, Servers, open_app, stored_refresh


def configure_oauth(page: Page, endpoint: str) -> None:
    page.evaluate(
        "(e) => pyauthWeb.configure({oauth: {tokenEndpoint: e, clientId: 'spa'}, retry: {attempts: 1}})",
        endpoint,
    )


def test_logout_from_any_tab_removes_refresh_tokens_and_new_sessions_do_not_inherit(
    new_page: Any, servers: Servers
) -> None:
    signin, other = new_page(), new_page()
    open_app(signin, servers)
    open_app(other, servers)  # an account page: never configured OAuth
    configure_oauth(signin, servers.host + "/oauth-token")
    alice = servers.issuer.mint(servers.realm, 300, sub="alice")
    signin.evaluate("([r, t]) => pyauthWeb.setToken(r, t, 'rt-alice-0')", [servers.realm, alice])
    stored = stored_refresh(signin)
    assert stored is not None
    assert stored[servers.realm]["refresh_token"] == "rt-alice-0"
    other.evaluate("() => pyauthWeb.clearTokens()")
    assert stored_refresh(other) is None
    # removeToken in a tab without OAuth removes the realm's refresh token too.
    signin.evaluate("([r, t]) => pyauthWeb.setToken(r, t, 'rt-alice-1')", [servers.realm, alice])
    other.evaluate("(r) => pyauthWeb.removeToken(r)", servers.realm)
    assert stored_refresh(other) is None
    # A new session set without a refresh token drops the one stored before it.
    signin.evaluate("([r, t]) => pyauthWeb.setToken(r, t, 'rt-alice-2')", [servers.realm, alice])
    bob = servers.issuer.mint(servers.realm, 300, sub="bob")
    other.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [servers.realm, bob])
    assert stored_refresh(other) is None


def test_refresh_token_never_follows_a_redirect(
    page: Page, servers: Servers, page_errors: list[str]
) -> None:
    foreign_hits: list[str] = []

    async def foreign(request: web.Request) -> web.Response:
        foreign_hits.append(await request.text())
        return web.json_response({"access_token": "x", "token_type": "Bearer"},
                                 headers={"Access-Control-Allow-Origin": "*"})

    foreign_app = web.Application()
    foreign_app.router.add_route("*", "/steal", foreign)
    foreign_origin = servers.thread.serve(foreign_app)

    async def redirecting(request: web.Request) -> web.Response:
        return web.Response(status=307, headers={"Location": foreign_origin + "/steal",
                                                 "Access-Control-Allow-Origin": "*"})

    idp = web.Application()
    idp.router.add_route("*", "/token", redirecting)
    idp.router.add_route("*", "/refresh", redirecting)
    idp_origin = servers.thread.serve(idp)

    open_app(page, servers)
    configure_oauth(page, idp_origin + "/token")
    stale = servers.token(ttl=STALE_TTL)  # inside the default skew: stale at once
    page.evaluate("([r, t]) => pyauthWeb.setToken(r, t, 'rt-secret')", [servers.realm, stale])
    reason = page.evaluate("(u) => pyauthWeb.getToken(u).then(() => 'no error', (e) => e.message)", servers.realm)
    assert reason != "no error"
    page.wait_for_function("() => window.__authErrors.length === 1")
    # The refresh-URL refresher does not follow either.
    page.evaluate("(u) => pyauthWeb.configure({refreshURL: u})", idp_origin + "/refresh")
    page.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [servers.realm, servers.token(ttl=STALE_TTL)])
    second = page.evaluate("(u) => pyauthWeb.getToken(u).then(() => 'no error', (e) => e.message)", servers.realm)
    assert second != "no error", page.evaluate("() => window.__authErrors")
    assert foreign_hits == []
    assert page_errors == []


def test_configure_checks_credential_urls_at_once(page: Page, servers: Servers) -> None:
    open_app(page, servers)
    configure = "(o) => pyauthWeb.configure(o).then(() => null, (e) => e.message)"
    bad = {
        "oauth.tokenEndpoint": [
            {"oauth": {"tokenEndpoint": "http://idp.example/token", "clientId": "c"}},
            {"oauth": {"tokenEndpoint": "/token", "clientId": "c"}},
            {"oauth": {"tokenEndpoint": "javascript:alert(1)", "clientId": "c"}},
        ],
        "refreshURL": [{"refreshURL": "http://idp.example/refresh"}, {"refreshURL": "/refresh"},
                       {"refreshURL": "javascript:alert(1)"}],
        "oauth.clientId": [{"oauth": {"tokenEndpoint": servers.host + "/token", "clientId": ""}}],
    }
    for name, options in bad.items():
        for option in options:
            message = page.evaluate(configure, option)
            assert message and name in message and "\n" not in message, (option, message)
    assert page.evaluate(configure, {"oauth": {"tokenEndpoint": servers.host + "/token", "clientId": "c"}}) is None
    assert page.evaluate(configure, {"refreshURL": "http://127.0.0.1:9/refresh"}) is None
