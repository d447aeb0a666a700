"""End-to-end fixtures: the real bundle, real loopback servers, Debian's Chromium."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright
from support import CONFIG, LOOPBACK_URL, PAGES, RECORD_EVENTS, Servers

from pyauth_web import assets
from pyauth_web.demo.browser import launch_chromium
from pyauth_web.demo.common import RealmLog
from pyauth_web.demo.servers import Issuer, ServerThread, host_app, realm_app


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.timeout(CONFIG.TEST_TIMEOUT_S))


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




@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh profile; afterwards, every request it made must have stayed on 127.0.0.1
    (the worker's included), except on pages opened with ``external="block"``."""
    ctx = browser.new_context()
    ctx.set_default_timeout(CONFIG.DEFAULT_TIMEOUT_MS)
    ctx.blocked_pages = set()  # type: ignore[attr-defined]
    # URLs a test answers inside the browser (context.route + fulfill): they never leave it
    ctx.answered_here = []  # type: ignore[attr-defined]
    left: list[str] = []

    def check(request: Any) -> None:
        if request.url.startswith(("data:", "blob:")) or LOOPBACK_URL.match(request.url):
            return
        if any(answered(request.url) for answered in ctx.answered_here):  # type: ignore[attr-defined]
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


