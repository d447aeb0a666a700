"""What the e2e tests share: the servers' handle, opening pages, waiting, reading server logs.

Fixtures live in ``conftest.py`` (pytest finds them there); everything a test imports comes
from here (``from support import ...``), never from ``conftest``.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiohttp import web
from playwright.sync_api import BrowserContext, Page

from pyauth_web.demo.browser import load_playwright_config, stop_service_workers
from pyauth_web.demo.common import RealmLog
from pyauth_web.demo.servers import Issuer, ServerThread, host_app
from pyauth_web.protocol import RECORD_DB, RECORD_STORE, STATE_CACHE
from pyauth_web.record import SessionRecord
from pyauth_web.tokens import DEFAULT_SKEW_SECONDS, DEFAULT_STORAGE_KEY

PAGES = Path(__file__).with_name("pages")
STORAGE_KEY = DEFAULT_STORAGE_KEY
SKEW = DEFAULT_SKEW_SECONDS  # the runtime's default skew margin (s)
STALE_TTL = SKEW / 2  # a token this close to its exp is inside the margin: stale at once
CONFIG = load_playwright_config()
LOOPBACK_URL = re.compile(rf"^(https?|wss?)://{re.escape(CONFIG.HOST)}[:/]")


@dataclass
class Servers:
    host: str  # the page's origin (bundle, sw.js, test pages, token issuer)
    realm: str  # a realm origin, e.g. "http://127.0.0.1:PORT/" (ends with "/")
    other: str  # an origin that is never a realm
    realm_log: RealmLog
    other_log: RealmLog
    issuer: Issuer
    thread: ServerThread

    def token(self, ttl: float = 300.0, realm: str | None = None) -> str:
        return self.issuer.mint(realm or self.realm, ttl)

    def realm_auth(self, path: str) -> list[str | None]:
        """The ``Authorization`` of each request the realm server saw for ``path``."""
        return auth_seen(self.realm_log, path)


def serve_bundle_copy(
    servers: Servers, bundle_dir: Path, copy: Path, change: Callable[[Path], None]
) -> str:
    """A copy of the bundle at ``copy``, changed by ``change(copy)``, served by a new host origin
    with the test pages. Returns the origin."""
    shutil.copytree(bundle_dir, copy)
    change(copy)
    return servers.thread.serve(
        host_app(
            copy,
            issuer=servers.issuer,
            page_vars={"REALM": servers.realm},
            extra_dirs={"t": PAGES},
        )
    )


def precompressed(path: Path) -> list[Path]:
    """The bundle's precompressed copies of ``path`` (``.br``, ``.gz``) that exist: a server
    sends them in its place, so a test that removes or rewrites a file removes them too."""
    return [p for p in (path.with_name(path.name + ".br"), path.with_name(path.name + ".gz"))
            if p.exists()]


def deployable_copy(bundle_dir: Path, root: Path) -> Path:
    """A copy of the bundle whose ``sw.js`` a test rewrites (a deploy); returns that file."""
    shutil.copytree(bundle_dir, root, symlinks=True)
    for stale in precompressed(root / "sw.js"):
        stale.unlink()
    return root / "sw.js"


def serve_broken_bundle(servers: Servers, bundle_dir: Path, tmp_path: Path) -> tuple[str, Path]:
    """A copy of the bundle without the Python packages the loader installs (the prebuilt
    site-packages, or without one the PyJWT wheel): the runtime cannot start. Served by a new
    host origin with the test pages. Returns (origin, the missing file)."""
    missing: list[Path] = []

    def drop_packages(root: Path) -> None:
        snapshot = json.loads((root / "manifest.json").read_text())["snapshot"]
        if snapshot is not None:
            missing.append(root / snapshot["bytecode"])
        else:
            missing.extend((root / "wheels").glob("pyjwt-*.whl"))
        for path in (missing[0], *precompressed(missing[0])):
            path.unlink()

    host = serve_bundle_copy(servers, bundle_dir, tmp_path / "broken", drop_packages)
    return host, missing[0]


def wait_ready(page: Page) -> None:
    page.wait_for_function("() => !!window.pyauthWeb", timeout=CONFIG.BOOT_TIMEOUT_MS)
    page.evaluate("() => pyauthWeb.ready.then(() => true)")


def wait_controlled(page: Page) -> None:
    page.wait_for_function(
        "() => !!navigator.serviceWorker.controller", timeout=CONFIG.BOOT_TIMEOUT_MS
    )


def stop_service_worker(context: BrowserContext, page: Page, *, forget: bool = False) -> None:
    """Kill the worker as Chromium does when it is idle: its in-memory state is lost.

    With ``forget``, its saved state (Cache Storage) goes too: the next start is a cold start.
    """
    if forget:
        page.evaluate("(c) => caches.delete(c)", STATE_CACHE)
    stop_service_workers(context, page)


COUNT_TOKEN_REQUESTS = """() => {
  window.__tokenRequests = [];
  navigator.serviceWorker.addEventListener('message', (e) => {
    if (e.data && e.data.type === 'request-realm-token') window.__tokenRequests.push(e.data.requestURL);
  });
}"""

RECORD_EVENTS = """
window.__authErrors = []; window.__events = []; window.__unhandled = [];
window.addEventListener('console:auth-error', (e) => window.__authErrors.push(e.detail));
window.addEventListener('pyauth-web:event', (e) => window.__events.push(e.detail));
window.addEventListener('unhandledrejection', (e) => window.__unhandled.push(String(e.reason)));
"""


# -- the strict Content-Security-Policy the README recommends (and Trusted Types on top) --------
def strict_csp(realm: str) -> str:
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(realm))
    return (
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; "
        f"img-src 'self' {origin}; connect-src 'self' {origin}; object-src 'none'; base-uri 'none'"
    )


TRUSTED_TYPES = "; require-trusted-types-for 'script'; trusted-types pyauth-web"


# -- one way to open a page, to load an image, and to read a server's log ------------------------
LOAD_IMAGE = """(u) => new Promise((resolve) => {
  const img = new Image();
  img.onload = () => resolve(img.naturalWidth > 0);
  img.onerror = () => resolve(false);
  img.src = u;
})"""
"""``page.evaluate(LOAD_IMAGE, url)``: True when the image loaded, False when it failed."""


def open_app(
    page: Page, servers: Servers, name: str = "app.html", *, host: str | None = None,
    controlled: bool = True,
) -> Page:
    """Open the test page ``name`` (``/t/<name>``, with a query if it has one), wait until the
    runtime is ready and, unless ``controlled=False``, until the worker controls the page."""
    page.goto(f"{host or servers.host}/t/{name}")
    wait_ready(page)
    if controlled:
        wait_controlled(page)
    return page


def auth_seen(log: RealmLog, path: str) -> list[str | None]:
    """The ``Authorization`` header of each request ``log``'s server saw for ``path`` (decoded,
    as the server logs it), in order; ``None`` for a request without one."""
    return [entry["auth"] for entry in log.for_path(path)]


def set_token(page: Page, realm: str, token: str) -> None:
    page.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [realm, token])

REFRESH_KEY = STORAGE_KEY + ":refresh"
"""Where bundles before the session record kept refresh tokens (moved into the record now)."""
SESSION_RECORD = """([db, store, app]) => new Promise((resolve, reject) => {
  const open = indexedDB.open(db, 1);
  open.onupgradeneeded = () => { open.result.createObjectStore(store); };
  open.onerror = () => reject(open.error);
  open.onsuccess = () => {
    const conn = open.result;
    const req = conn.transaction(store).objectStore(store).get(app);
    req.onsuccess = () => { conn.close(); resolve(typeof req.result === 'string' ? req.result : null); };
    req.onerror = () => { conn.close(); reject(req.error); };
  };
})"""


PUT_RECORD = """([db, store, app, text]) => new Promise((resolve, reject) => {
  const open = indexedDB.open(db, 1);
  open.onupgradeneeded = () => { open.result.createObjectStore(store); };
  open.onerror = () => reject(open.error);
  open.onsuccess = () => {
    const tx = open.result.transaction(store, 'readwrite');
    tx.objectStore(store).put(text, app);
    tx.oncomplete = () => { open.result.close(); resolve(true); };
    tx.onabort = () => reject(tx.error);
  };
})"""


def put_record(page: Page, record: SessionRecord, app: str = STORAGE_KEY) -> None:
    """Write ``record`` as the app's session record (as a tab of the runtime commits one)."""
    page.evaluate(PUT_RECORD, [RECORD_DB, RECORD_STORE, app, record.dumps()])


def session_record(page: Page, app: str = STORAGE_KEY) -> SessionRecord:
    """The app's session record (IndexedDB) as ``page`` reads it now."""
    return SessionRecord.loads(page.evaluate(SESSION_RECORD, [RECORD_DB, RECORD_STORE, app]))


def stored_refresh(page: Page, app: str = STORAGE_KEY) -> dict[str, Any] | None:
    """The refresh tokens the app's session record holds, ``{realm: {refresh_token, session}}``
    (``None``: none at all). The record is the one place they are kept."""
    raw = session_record(page, app).refresh.dumps()
    return None if raw is None else dict(json.loads(raw))
HELLO_WITH_ACK = """(app) => new Promise((resolve) => {
  navigator.serviceWorker.addEventListener('message', (e) => { if (e.data && e.data.ack === 'probe') resolve(true); });
  navigator.serviceWorker.startMessages();
  navigator.serviceWorker.controller.postMessage({type: 'hello', app, ack: 'probe'});
})"""
"""Join ``app`` from this page and resolve once the worker acknowledged it."""


# -- a loopback token endpoint and refresh URL (refresh tests) -----------------------------------
class Endpoint:
    """A loopback token endpoint (``/token``, OAuth form) and refresh URL (``/refresh``, JSON)
    with CORS for credentialed requests. ``mode``: ``"answer"``, ``"hang"`` (accept and never
    answer) or ``"redirect"`` (307 to ``redirect_to``); ``hang_next`` hangs that many requests
    first. Every request is recorded (``received``), hung ones whose connection the client
    closed in ``aborted``."""

    def __init__(self, servers: Servers, mode: str = "answer") -> None:
        self.servers = servers
        self.mode = mode
        self.hang_next = 0
        self.redirect_to = ""
        self.received: list[dict[str, Any]] = []
        self.aborted: list[int] = []
        self.grants: dict[str, str] = {}  # valid refresh token -> user
        self._release = asyncio.Event()
        self._issued = 0
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.origin = servers.thread.serve(app)

    def posts(self) -> list[dict[str, Any]]:
        return [r for r in self.received if r["method"] == "POST"]

    def refresh_tokens_received(self) -> list[str]:
        return [
            parse_qs(r["body"]).get("refresh_token", [""])[0]
            for r in self.posts()
            if r["path"] == "/token"
        ]

    def release(self) -> None:
        self.servers.thread.loop.call_soon_threadsafe(self._release.set)

    def _cors(self, request: web.Request) -> dict[str, str]:
        return {
            "Access-Control-Allow-Origin": request.headers.get("Origin") or "*",
            "Access-Control-Allow-Credentials": "true",
            "Access-Control-Allow-Headers": "Content-Type, Accept",
            "Access-Control-Allow-Methods": "POST",
            "Cache-Control": "no-store",
        }

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.text() if request.can_read_body else ""
        index = len(self.received)
        self.received.append(
            {"method": request.method, "path": request.path, "body": body, "t": time.time()}
        )
        headers = self._cors(request)
        if request.method == "OPTIONS":
            return web.Response(status=204, headers=headers)
        if self.mode == "redirect":
            return web.Response(status=307, headers={**headers, "Location": self.redirect_to})
        if self.mode == "hang" or self.hang_next > 0:
            self.hang_next = max(0, self.hang_next - 1)
            while not self._release.is_set():
                transport = request.transport
                if transport is None or transport.is_closing():
                    self.aborted.append(index)
                    break
                await asyncio.sleep(0.05)
            return web.json_response({"error": "released"}, status=503, headers=headers)
        if request.path == "/refresh":
            realm = json.loads(body or "{}").get("realmURL") or ""
            token = self.servers.issuer.mint(realm, 300, sub="refresh-url")
            return web.json_response({"token": token}, headers=headers)
        form = parse_qs(body)
        user = self.grants.pop(form.get("refresh_token", [""])[0], None)
        if user is None:
            return web.json_response({"error": "invalid_grant"}, status=400, headers=headers)
        self._issued += 1
        rotated = f"rt-{user}-{self._issued}"
        self.grants[rotated] = user
        reply = {
            "access_token": self.servers.issuer.mint(self.servers.realm, 300, sub=user),
            "token_type": "Bearer",
            "expires_in": 300,
            "refresh_token": rotated,
        }
        return web.json_response(reply, headers=headers)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def refreshes_once(page: Page, servers: Servers) -> None:
    """A token inside its skew margin, set in ``page`` (whose runtime has a refresher): the next
    ``getToken`` returns a new one, and the issuer saw exactly one refresh."""
    since = time.time()
    stale = servers.token(ttl=STALE_TTL)
    page.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [servers.realm, stale])
    fresh = page.evaluate("(r) => pyauthWeb.getToken(r)", servers.realm)
    assert fresh and fresh != stale
    assert len(servers.issuer.refreshes(since)) == 1
