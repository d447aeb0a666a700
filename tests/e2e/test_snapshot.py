"""Issue 11 item 2: the memory snapshot. The bundle ships one made at bundle time (Node, gzip),
which a first visit restores instead of booting Pyodide, and keeps unpacked in Cache Storage (a
later visit reads it back faster than it could unpack a compressed copy: README, Performance).
A bundle without one makes it in the page; a snapshot that does not restore is dropped and the
runtime boots anyway."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

from playwright.sync_api import BrowserContext, Page
from support import Servers, precompressed, serve_bundle_copy, wait_ready

# the loader's own cache name (defined there only: no other code opens it)
SNAPSHOT_CACHE = re.findall(
    r"const SNAPSHOT_CACHE = '([^']+)';", (Path(__file__).parents[2] / "web" / "pyauth-web.js").read_text()
)[0]
MARKS = """() => ['snapshot-fetched', 'snapshot-made']
  .filter((m) => performance.getEntriesByName(`pyauth-web:${m}`).length > 0)"""
STORED = """async () => {
  const out = [];
  for (const name of await caches.keys()) {
    if (!name.startsWith('pyauth-web-snapshot')) continue;
    const cache = await caches.open(name);
    for (const request of await cache.keys()) {
      const body = new Uint8Array(await (await cache.match(request)).arrayBuffer());
      out.push({name, bytes: body.length, gzip: body[0] === 0x1f && body[1] === 0x8b});
    }
  }
  return out;
}"""
WORKS = "(r) => pyauthWeb.getToken(r + 'x').then((t) => t === null)"


def manifest(bundle_dir: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((bundle_dir / "manifest.json").read_text())
    return loaded


def test_a_first_visit_restores_the_bundled_snapshot_and_keeps_it(
    page: Page, servers: Servers, bundle_dir: Path, page_errors: list[str]
) -> None:
    shipped = manifest(bundle_dir)["snapshot"]
    assert shipped is not None, "the test bundle is made with Node: it must ship a snapshot"
    assert shipped["bytes"] > 20_000_000 and shipped["stored"] < shipped["bytes"] / 3
    page.goto(f"{servers.host}/t/app.html")
    wait_ready(page)
    assert page.evaluate(MARKS) == ["snapshot-fetched"]  # restored, not booted nor made here
    assert page.evaluate(WORKS, servers.realm)
    page.wait_for_function(f"async () => ({STORED})().then((s) => s.length === 1)")
    assert page.evaluate(STORED) == [
        {"name": SNAPSHOT_CACHE, "bytes": shipped["bytes"], "gzip": False}
    ]
    page.reload()
    wait_ready(page)
    assert page.evaluate(MARKS) == []  # from Cache Storage
    assert page.evaluate(WORKS, servers.realm)
    assert page_errors == []


def test_without_a_bundled_snapshot_the_page_makes_one_and_stores_it(
    page: Page, servers: Servers, bundle_dir: Path, tmp_path: Path, page_errors: list[str]
) -> None:
    def no_snapshot(root: Path) -> None:
        data = manifest(root)
        (root / data["snapshot"]["file"]).unlink()
        data["snapshot"] = None
        (root / "manifest.json").write_text(json.dumps(data))

    host = serve_bundle_copy(servers, bundle_dir, tmp_path / "plain", no_snapshot)
    page.goto(f"{host}/t/app.html")
    wait_ready(page)
    assert page.evaluate(MARKS) == ["snapshot-made"]
    page.wait_for_function(f"async () => ({STORED})().then((s) => s.length === 1)")
    (stored,) = page.evaluate(STORED)
    assert stored["bytes"] > 20_000_000 and not stored["gzip"]
    page.reload()
    wait_ready(page)
    assert page.evaluate(MARKS) == []
    assert page.evaluate(WORKS, servers.realm)
    assert page_errors == []


def test_a_snapshot_that_does_not_restore_is_dropped_and_the_runtime_boots(
    page: Page, servers: Servers, bundle_dir: Path, tmp_path: Path, page_errors: list[str]
) -> None:
    def corrupt(root: Path) -> None:
        data = manifest(root)
        junk = b"not a snapshot" * 100_000
        (root / data["snapshot"]["file"]).write_bytes(gzip.compress(junk))
        plain = root / data["snapshot"]["plain"]  # what a host sending precompressed files sends
        for sibling in precompressed(plain):
            sibling.unlink()
        plain.write_bytes(junk)

    host = serve_bundle_copy(servers, bundle_dir, tmp_path / "corrupt", corrupt)
    warnings: list[str] = []
    page.on("console", lambda m: warnings.append(m.text) if m.type == "warning" else None)
    page.goto(f"{host}/t/app.html")
    wait_ready(page)
    assert page.evaluate(WORKS, servers.realm)
    assert any("did not restore" in w for w in warnings), warnings
    assert page_errors == []


def test_every_page_draws_its_own_random_numbers(
    browser: Any, servers: Servers
) -> None:
    """A snapshot carries the PRNG state it was made with (the same bundle for every user):
    the runtime reseeds, so refresh jitter differs between pages."""
    draws = []
    for _ in range(2):
        context: BrowserContext = browser.new_context()
        try:
            page = context.new_page()
            page.goto(f"{servers.host}/t/app.html")
            wait_ready(page)
            draws.append(page.evaluate(
                "() => pyauthWeb.pyodide.runPython('import random; random.random()')"))
        finally:
            context.close()
    assert draws[0] != draws[1]


def test_the_bundled_snapshot_holds_the_whole_runtime_and_binds_the_page_s_own_objects(
    page: Page, servers: Servers, bundle_dir: Path, page_errors: list[str]
) -> None:
    """Made under Node with the browser adapter imported too (nothing left to import at start):
    the names the adapter and Pyodide's modules took from ``js`` there are the page's own
    objects here, and the prebuilt zip is read in place (zipimport), not unpacked."""
    shipped = manifest(bundle_dir)["snapshot"]
    zip_path = shipped["sysPath"]
    memory = gzip.decompress((bundle_dir / shipped["file"]).read_bytes())
    package = Path(__file__).parents[2] / "pyauth_web"
    tooling = {"__main__", "cli", "assets"}
    modules = [p for p in package.glob("*.py") if p.stem not in tooling]
    modules += list((package / "browser").glob("*.py"))
    missing = [
        str(p.relative_to(package.parent))
        for p in modules
        if f"{zip_path}/{p.relative_to(package.parent).with_suffix('.pyc')}".encode() not in memory
    ]
    assert missing == [], "modules the snapshot does not hold (imported at every start)"

    page.goto(f"{servers.host}/t/app.html")
    wait_ready(page)
    assert page.evaluate(MARKS) == ["snapshot-fetched"]
    found = page.evaluate(
        """() => { const py = pyauthWeb.pyodide; return {
          xhr: py.runPython('from pyodide.http import pyxhr; pyxhr.XMLHttpRequest') === XMLHttpRequest,
          fetch: py.runPython('from pyodide.http import _pyfetch; _pyfetch._jsfetch') === fetch,
          file: py.runPython("import sys; sys.modules['pyauth_web.browser.runtime'].__file__"),
          unpacked: py.runPython("import os, sysconfig; sorted(os.listdir(sysconfig.get_path('purelib')))").toJs(),
          later: py.runPython('import pyauth_web.demo; pyauth_web.demo.__doc__ is not None'),
          source: py.runPython('import inspect, pyauth_web.browser.runtime as r; "def start" in inspect.getsource(r)'),
        }; }"""
    )
    assert found == {
        "xhr": True,  # a stand-in under Node, the page's own class here
        "fetch": True,
        "file": f"{zip_path}/pyauth_web/browser/runtime.pyc",
        "unpacked": [],
        "later": True,  # a module the snapshot lacks still imports, from the zip
        "source": True,  # tracebacks and inspect read the sources in the zip
    }
    assert page.evaluate(WORKS, servers.realm)
    assert page_errors == []
