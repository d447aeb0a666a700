"""The real OpenID Provider (node `oidc-provider`, tests/oidc/server.mjs) for the e2e tests:
start it on 127.0.0.1, read its event log, and sign in through its own login pages."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from playwright.sync_api import Page
from support import Servers

OP_DIR = Path(__file__).resolve().parents[1] / "oidc"
CLIENT_ID = "pyauth-web-e2e"
ACCESS_TTL = 20


class Provider:
    def __init__(self, proc: subprocess.Popen[str], issuer: str) -> None:
        self.proc = proc
        self.issuer = issuer
        self.events: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            with self._changed:
                self.events.append(event)
                self._changed.notify_all()

    def wait_for(self, kind: str, count: int, since: float = 0.0, timeout: float = 20) -> bool:
        """Block until the provider logged ``count`` events of ``kind`` (bounded)."""
        with self._changed:
            return self._changed.wait_for(
                lambda: len(self.grants(kind, since)) >= count, timeout=timeout
            )

    def grants(self, kind: str, since: float = 0.0) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == kind and e.get("t", 0) >= since]


class HeldReplies:
    """A loopback front for the provider's token endpoint (``endpoint``): every request goes on
    to the provider and its reply comes back, except the first ``hold_next`` ones, whose reply is
    kept from the browser, as if still on its way: the provider has answered (and rotated the
    refresh token) but the tab has not heard. A held request ends when the browser closes its
    connection (recorded in ``ended``, monotonic time) or at :meth:`release` (a 504)."""

    HEADERS = ("content-type", "cache-control", "pragma", "dpop-nonce", "www-authenticate")

    def __init__(self, servers: Servers, op: Provider, hold_next: int = 1) -> None:
        self.thread = servers.thread
        self.target = f"{op.issuer}/token"
        self.hold_next = hold_next
        self.held: list[int] = []  # the provider's status for each held request
        self.ended: list[float] = []  # when the browser gave up each held request
        self._release = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/token", self.handle)
        self.origin = self.thread.serve(app)
        self.endpoint = f"{self.origin}/token"

    def release(self) -> None:
        """Answer held requests still open (504) and stop the front."""
        self.thread.loop.call_soon_threadsafe(self._release.set)
        asyncio.run_coroutine_threadsafe(self.thread.stop(self.origin), self.thread.loop).result(
            timeout=10
        )

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        forward = {k: v for k, v in request.headers.items()
                   if k.lower() in ("content-type", "accept", "origin", "dpop")}
        async with aiohttp.ClientSession() as session, session.request(
            request.method, self.target, data=body, headers=forward
        ) as reply:
            payload = await reply.read()
            status = reply.status
            headers = {k: v for k, v in reply.headers.items()
                       if k.lower() in self.HEADERS or k.lower().startswith("access-control-")}
        if request.method == "POST" and self.hold_next > 0:
            self.hold_next -= 1
            self.held.append(status)
            while not self._release.is_set():  # the reply is "on its way" until the tab leaves
                transport = request.transport
                if transport is None or transport.is_closing():
                    self.ended.append(time.monotonic())
                    break
                await asyncio.sleep(0.05)
            return web.Response(status=504, headers=headers)
        return web.Response(status=status, body=payload, headers=headers)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def authorize(page: Page, op: Provider, redirect: str, resource: str) -> tuple[str, str]:
    """Authorization code + PKCE through the provider's own login and consent pages: returns
    the code and the PKCE verifier for its exchange."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    query = urllib.parse.urlencode({
        "client_id": CLIENT_ID, "response_type": "code", "redirect_uri": redirect,
        "scope": "openid offline_access api", "prompt": "consent", "resource": resource,
        "code_challenge": challenge.decode(), "code_challenge_method": "S256",
    })
    page.goto(f"{op.issuer}/auth?{query}")
    page.fill("input[name=login]", "alice")
    page.fill("input[name=password]", "any")
    page.click("button[type=submit]")
    page.click("button[type=submit]")  # consent
    page.wait_for_url(f"{redirect}?*")
    code = urllib.parse.parse_qs(urllib.parse.urlsplit(page.url).query)["code"][0]
    return code, verifier


def sign_in(page: Page, op: Provider, servers: Servers) -> dict[str, Any]:
    """Sign in and exchange the code from here (Bearer tokens)."""
    redirect = f"{servers.host}/t/callback.html"
    code, verifier = authorize(page, op, redirect, servers.realm)
    body = urllib.parse.urlencode({
        "grant_type": "authorization_code", "code": code, "redirect_uri": redirect,
        "client_id": CLIENT_ID, "code_verifier": verifier, "resource": servers.realm,
    }).encode()
    with urllib.request.urlopen(f"{op.issuer}/token", data=body, timeout=10) as resp:
        return dict(json.loads(resp.read()))


@contextmanager
def running_provider(
    redirect: str, resource: str, ttl: int = ACCESS_TTL, *, nonce: bool = False,
    refresh_ttl: int | None = None,
) -> Iterator[Provider]:
    """The provider for ``resource`` (its JWT access tokens' audience); with ``nonce`` every
    DPoP proof must carry a nonce it gave; with ``refresh_ttl`` the access tokens of the
    refresh_token grant live that long (the code exchange's: ``ttl``)."""
    node = shutil.which("node")
    if node is None or not (OP_DIR / "node_modules" / "oidc-provider").exists():
        pytest.fail("oidc-provider is not installed: run `npm ci` in tests/oidc (make test does)")
    port = free_port()
    args = [node, "server.mjs", str(port), CLIENT_ID, redirect, resource, str(ttl)]
    flags = [*(["nonce"] if nonce else []), *([f"refresh-ttl={refresh_ttl}"] if refresh_ttl else [])]
    proc = subprocess.Popen(
        [*args, *flags],
        cwd=OP_DIR, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    op = Provider(proc, f"http://127.0.0.1:{port}")
    try:
        if not op.wait_for("listening", 1):
            raise RuntimeError(f"oidc-provider did not start: {op.events}")
        yield op
    finally:
        proc.terminate()
        proc.wait(timeout=10)
