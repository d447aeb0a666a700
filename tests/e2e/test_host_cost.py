"""Issue 24: a good guest in the host page. The bundle ships precompressed copies of its large
files and works whether the host sends them (Content-Encoding) or sends every file as it is; a
first visit on a slow link boots instead of downloading the snapshot, and keeps the snapshot in
idle time for the next visit; ``data-boot="idle"`` starts the runtime after the host's load.
The hosts sending the bundle precompressed or as it is are a story of every engine
(``engines/test_stories.py::test_a_host_sending_the_bundle_precompressed_or_as_it_is``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from playwright.sync_api import Page
from support import (
    LOAD_IMAGE,
    PAGES,
    STORAGE_KEY,
    Servers,
    wait_controlled,
    wait_ready,
)

from pyauth_web.demo.servers import Serving, host_app

BUNDLE_ENTRIES = """() => performance.getEntriesByType('resource')
  .filter((e) => e.name.includes('/pyauth/'))
  .map((e) => ({path: e.name.split('/pyauth/')[1], encoded: e.encodedBodySize,
                decoded: e.decodedBodySize, start: e.startTime}))"""
MARK = """(name) => { const m = performance.getEntriesByName(`pyauth-web:${name}`)[0];
  return m ? {t: m.startTime, detail: m.detail} : null; }"""


def serve(servers: Servers, bundle_dir: Path, serving: Serving) -> str:
    return servers.thread.serve(host_app(bundle_dir, issuer=servers.issuer, serving=serving,
                                         page_vars={"REALM": servers.realm},
                                         extra_dirs={"t": PAGES}))


def manifest(bundle_dir: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((bundle_dir / "manifest.json").read_text())
    return loaded


def works(page: Page, servers: Servers, run_id: str, name: str) -> None:
    """The runtime answers the worker: a realm image goes out with the token."""
    wait_controlled(page)
    token = servers.token()
    page.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [servers.realm, token])
    path = f"/img/{name}-{run_id}"
    assert page.evaluate(LOAD_IMAGE, servers.realm + path[1:]) is True
    assert servers.realm_auth(path) == [f"Bearer {token}"]


def test_a_slow_link_boots_and_keeps_the_snapshot_for_the_next_visit(
    page: Page, servers: Servers, bundle_dir: Path, run_id: str, page_errors: list[str]
) -> None:
    """At 2 MB/s the snapshot (6.8 MB gzip) would take ~3.4 s, more than booting saves."""
    host = serve(servers, bundle_dir, Serving(rate=2_000_000))
    page.goto(f"{host}/t/app.html")
    wait_ready(page)
    choice = page.evaluate(MARK, "choice")["detail"]
    assert choice["restore"] is False and choice["why"] == "link", choice
    assert choice["downloadMs"] > 2000, choice
    assert page.evaluate(MARK, "pyodide-loaded")["detail"] == {"from": "boot"}
    works(page, servers, run_id, "slow")
    # After ready and the host's idle time, the bundle's snapshot is fetched and kept.
    page.wait_for_function("() => performance.getEntriesByName('pyauth-web:snapshot-saved').length > 0",
                           timeout=60_000)
    ready = page.evaluate(MARK, "ready")["t"]
    plain = manifest(bundle_dir)["snapshot"]["plain"]
    (fetched,) = [e for e in page.evaluate(BUNDLE_ENTRIES) if e["path"] == plain]
    assert fetched["start"] > ready
    page.reload()
    wait_ready(page)
    assert page.evaluate(MARK, "pyodide-loaded")["detail"] == {"from": "cache"}
    assert page_errors == []


def test_boot_idle_paints_from_the_worker_and_starts_the_runtime_after_load(
    page: Page, servers: Servers, run_id: str, page_errors: list[str]
) -> None:
    page.goto(f"{servers.host}/t/boot-idle.html?n=0&run=x")
    wait_ready(page)
    start = page.evaluate(MARK, "start")["t"]
    assert start >= page.evaluate("() => window.atLoad.t")  # began after the host's load event
    works(page, servers, run_id, "idle")  # the worker keeps this token
    # First paint: the worker's saved token; the runtime starts after the load event.
    page.goto(f"{servers.host}/t/boot-idle.html?n=5&run={run_id}")
    page.wait_for_function("() => window.atLoad !== null", timeout=20_000)
    assert page.evaluate("() => window.atLoad.loaded") == 5
    assert page.evaluate(MARK, "start") is None or (
        page.evaluate(MARK, "start")["t"] >= page.evaluate("() => window.atLoad.t"))
    wait_ready(page)
    token = page.evaluate("(r) => pyauthWeb.getToken(r + 'x')", servers.realm)
    for i in range(5):
        assert servers.realm_auth(f"/img/idle-{i}-{run_id}") == [f"Bearer {token}"]
    # What the page loses: a token the worker does not have (written to storage by the host
    # alone) is not asked for before the runtime starts; the recovery re-requests the image.
    other = f"{run_id}b"
    fresh = servers.token(ttl=600)
    page.evaluate("""([k, r, t]) => { const s = JSON.parse(localStorage.getItem(k) || '{}');
                     s[r] = t; localStorage.setItem(k, JSON.stringify(s)); }""",
                  [STORAGE_KEY, servers.realm, fresh])
    page.goto(f"{servers.host}/t/boot-idle.html?n=2&run={other}")
    wait_ready(page)
    page.wait_for_function("() => [...document.images].every((i) => i.complete && i.naturalWidth > 0)",
                           timeout=20_000)
    for i in range(2):
        seen = servers.realm_auth(f"/img/idle-{i}-{other}")
        assert seen[-1] == f"Bearer {fresh}", seen
    assert page_errors == []


def test_navigations_do_not_reach_the_worker(
    page: Page, servers: Servers, run_id: str, page_errors: list[str]
) -> None:
    """Static routing (Chromium): a controlled page's navigation goes to the network without
    the worker's fetch handler, and the page is controlled all the same."""
    page.goto(f"{servers.host}/t/app.html")
    wait_ready(page)
    wait_controlled(page)
    page.reload()
    wait_ready(page)
    nav = page.evaluate("""() => { const n = performance.getEntriesByType('navigation')[0].toJSON();
      return {...n, controlled: !!navigator.serviceWorker.controller}; }""")
    assert nav["controlled"] is True
    assert (nav["workerMatchedSourceType"], nav["workerStart"]) == ("network", 0)
    works(page, servers, run_id, "routed")  # subresources still reach the worker
    assert page_errors == []
