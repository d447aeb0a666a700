"""The refresh-token rotation rule that ships is the core's (issue 9, item 4), in real Chromium.

The browser's OAuth refresher runs :class:`pyauth_web.oauth.RefreshTokenGrant`: a refresh token
the server provably did not use (a 503) is sent again, one whose reply was lost (the connection
dropped) never is, and the episode ends with the reason its request got.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import jwt
from aiohttp import web
from playwright.sync_api import Page
from support import Servers, stored_refresh, wait_controlled, wait_ready

GET = """(u) => pyauthWeb.getToken(u).then(
  (t) => ({ok: true, value: t}), (e) => ({ok: false, value: String(e && e.message)}))"""
RETRY = {"attempts": 2, "base": 0.1, "cap": 0.1}


class ScriptedEndpoint:
    """A loopback OAuth token endpoint that rotates refresh tokens (a reused one is
    ``invalid_grant``); ``script`` says what the next POSTs get first: ``503`` or ``"drop"``
    (the connection closes without a reply)."""

    def __init__(self, servers: Servers, user: str, first_token: str, script: list[Any]) -> None:
        self.servers, self.user, self.script = servers, user, script
        self.valid = first_token
        self.received: list[str] = []  # the refresh token of every POST, in order
        app = web.Application()
        app.router.add_route("*", "/token", self.handle)
        self.origin = servers.thread.serve(app)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        headers = {"Access-Control-Allow-Origin": request.headers.get("Origin") or "*",
                   "Cache-Control": "no-store"}
        if request.method == "OPTIONS":
            return web.Response(status=204, headers={**headers, "Access-Control-Allow-Methods": "POST",
                                                     "Access-Control-Allow-Headers": "Content-Type, Accept"})
        token = parse_qs(await request.text()).get("refresh_token", [""])[0]
        self.received.append(token)
        step = self.script.pop(0) if self.script else None
        if step == "drop":
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)  # never reaches the client
        if step == 503:
            return web.json_response({"error": "temporarily_unavailable"}, status=503,
                                     headers=headers)
        if token != self.valid:
            return web.json_response({"error": "invalid_grant"}, status=400, headers=headers)
        self.valid = f"{token}-next"
        reply = {"access_token": self.servers.issuer.mint(self.servers.realm, 300, sub=self.user),
                 "token_type": "Bearer", "expires_in": 300, "refresh_token": self.valid}
        return web.json_response(reply, headers=headers)


def start(page: Page, servers: Servers, endpoint: ScriptedEndpoint, refresh_token: str) -> None:
    page.goto(servers.host + "/t/app.html")
    wait_ready(page)
    wait_controlled(page)
    page.evaluate("(o) => pyauthWeb.configure(o)",
                  {"oauth": {"tokenEndpoint": endpoint.origin + "/token", "clientId": "spa"},
                   "retry": RETRY})
    stale = servers.issuer.mint(servers.realm, 30, sub=endpoint.user)  # inside the skew: refresh
    page.evaluate("([r, t, rt]) => pyauthWeb.setToken(r, t, rt)",
                  [servers.realm, stale, refresh_token])


def test_a_refresh_token_the_server_did_not_use_is_sent_again(
    page: Page, servers: Servers, run_id: str, page_errors: list[str]
) -> None:
    first = f"rt-{run_id}"
    endpoint = ScriptedEndpoint(servers, "carol", first, [503])
    start(page, servers, endpoint, first)
    got = page.evaluate(GET, servers.realm)
    assert got["ok"], got
    assert jwt.decode(got["value"], options={"verify_signature": False})["sub"] == "carol"
    # The 503 did not consume it: the retry sent the same token, and the rotated one is stored.
    assert endpoint.received == [first, first]
    assert (stored_refresh(page) or {})[servers.realm]["refresh_token"] == f"{first}-next"
    assert page.evaluate("() => window.__authErrors") == []
    assert page_errors == []


def test_a_refresh_token_whose_reply_was_lost_is_never_sent_again(
    page: Page, servers: Servers, run_id: str, page_errors: list[str]
) -> None:
    first = f"rt-{run_id}"
    endpoint = ScriptedEndpoint(servers, "dave", first, ["drop"])
    start(page, servers, endpoint, first)
    got = page.evaluate(GET, servers.realm)
    # The second attempt does not resend it (the server may have rotated it): the episode ends
    # with the reason the first one got.
    assert not got["ok"] and "network error" in got["value"], got
    assert endpoint.received == [first]
    page.wait_for_function("() => window.__authErrors.length === 1", timeout=5_000)
    error = page.evaluate("() => window.__authErrors[0]")
    assert (error["reason"], error["recoverable"]) == ("network error", False), error
    assert "not resending a refresh token" in got["value"]
    # kept for the session, never spent again
    assert (stored_refresh(page) or {})[servers.realm]["refresh_token"] == first
    assert page_errors == []
