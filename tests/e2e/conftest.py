"""End-to-end fixtures: the real bundle, real loopback servers, Debian's Chromium."""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from pyauth_web import assets
from pyauth_web.demo.browser import launch_chromium, load_playwright_config
from pyauth_web.demo.servers import Issuer, RealmLog, ServerThread, host_app, realm_app
from pyauth_web.protocol import STATE_CACHE
from pyauth_web.tokens import DEFAULT_STORAGE_KEY

PAGES = Path(__file__).with_name("pages")
STORAGE_KEY = DEFAULT_STORAGE_KEY


CONFIG = load_playwright_config()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.timeout(CONFIG.TEST_TIMEOUT_S))


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


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = assets.default_cache()
    assets.vendor(cache)
    out = tmp_path_factory.mktemp("bundle")
    return assets.bundle(out, cache).root


@pytest.fixture(scope="session")
def servers(bundle_dir: Path) -> Iterator[Servers]:
    thread = ServerThread()
    realm_log, other_log = RealmLog(), RealmLog()
    issuer = Issuer()
    realm = thread.serve(realm_app(log=realm_log)) + "/"
    other = thread.serve(realm_app(log=other_log)) + "/"
    host = thread.serve(
        host_app(
            bundle_dir,
            issuer=issuer,
            page_vars={"REALM": realm, "OTHER": other},
            extra_dirs={"t": PAGES},
        )
    )
    yield Servers(host, realm, other, realm_log, other_log, issuer, thread)
    thread.close()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        browser = launch_chromium(pw, CONFIG)
        yield browser
        browser.close()


LOOPBACK_URL = re.compile(rf"^(https?|wss?)://{re.escape(CONFIG.HOST)}[:/]")


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh profile; afterwards, every request it made must have stayed on 127.0.0.1
    (the worker's included), except on pages opened with ``external="block"``."""
    ctx = browser.new_context()
    ctx.set_default_timeout(CONFIG.DEFAULT_TIMEOUT_MS)
    ctx.blocked_pages = set()  # type: ignore[attr-defined]
    left: list[str] = []

    def check(request: Any) -> None:
        if request.url.startswith(("data:", "blob:")) or LOOPBACK_URL.match(request.url):
            return
        try:
            page = request.frame.page
        except Exception:  # a service worker's request has no frame
            page = None
        if page not in ctx.blocked_pages:  # type: ignore[attr-defined]
            left.append(request.url)

    ctx.on("request", check)
    yield ctx
    ctx.close()
    assert left == [], f"requests left loopback: {left}"


@pytest.fixture
def page_errors() -> list[str]:
    """Uncaught errors the page raised during the test."""
    return []


@pytest.fixture
def new_page(context: BrowserContext, page_errors: list[str]) -> Any:
    """Open a tab that records auth events, unhandled rejections and page errors."""

    def open_tab(external: str = "fail") -> Page:
        page = context.new_page()
        if external == "block":  # a page that is not ours: abort what would leave loopback
            context.blocked_pages.add(page)  # type: ignore[attr-defined]
            page.route(lambda url: not LOOPBACK_URL.match(url), lambda route: route.abort())
        page.add_init_script(RECORD_EVENTS)
        page.on("pageerror", lambda err: page_errors.append(f"pageerror: {err}"))
        return page

    return open_tab


@pytest.fixture
def page(new_page: Any) -> Page:
    return new_page()


@pytest.fixture
def run_id() -> str:
    return uuid.uuid4().hex[:10]


# -- helpers used by the tests ------------------------------------------------------------------
def serve_broken_bundle(servers: Servers, bundle_dir: Path, tmp_path: Path) -> tuple[str, Path]:
    """A copy of the bundle without its PyJWT wheel (the runtime cannot start), served by a new
    host origin with the test pages. Returns (origin, the missing file)."""
    broken = tmp_path / "broken"
    shutil.copytree(bundle_dir, broken)
    (missing,) = (broken / "wheels").glob("pyjwt-*.whl")
    missing.unlink()
    host = servers.thread.serve(
        host_app(
            broken,
            issuer=servers.issuer,
            page_vars={"REALM": servers.realm},
            extra_dirs={"t": PAGES},
        )
    )
    return host, missing


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
    cdp = context.new_cdp_session(page)
    cdp.send("ServiceWorker.enable")
    cdp.send("ServiceWorker.stopAllWorkers")
    cdp.detach()


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
