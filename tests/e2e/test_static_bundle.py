"""`pyauth-web bundle` output served by a plain static server (Python's http.server)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from playwright.sync_api import Page
from support import Servers, serve_broken_bundle, wait_controlled, wait_ready

HOST_PAGE = """<!doctype html><html><head><meta charset="utf-8">
<script src="/pyauth/pyauth-web.js" data-sw="/sw.js" data-realms="{realm}"></script>
</head><body><img id="card" alt="card"></body></html>"""


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def test_bundle_served_by_a_plain_static_server(
    tmp_path: Path, page: Page, servers: Servers, run_id: str, page_errors: list[str]
) -> None:
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "pyauth_web", "bundle", str(site / "pyauth")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    shutil.copy(site / "pyauth" / "sw.js", site / "sw.js")  # a worker at the root controls "/"
    (site / "index.html").write_text(HOST_PAGE.format(realm=servers.realm))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(site)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        origin = f"http://127.0.0.1:{httpd.server_address[1]}"
        page.goto(origin + "/")
        wait_ready(page)
        wait_controlled(page)
        token = servers.token()
        page.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [servers.realm, token])
        url = f"{servers.realm}img/static-{run_id}"
        page.evaluate(
            "(u) => new Promise((resolve) => { const img = document.getElementById('card');"
            " img.onload = img.onerror = resolve; img.src = u; })",
            url,
        )
        assert page.evaluate("() => document.getElementById('card').naturalWidth") > 0
        assert [e["auth"] for e in servers.realm_log.for_path(f"/img/static-{run_id}")] == [
            f"Bearer {token}"
        ]
    finally:
        httpd.shutdown()
    assert page_errors == []


def test_a_broken_bundle_fails_clearly_and_degrades_to_plain_fetch(
    tmp_path: Path,
    bundle_dir: Path,
    page: Page,
    servers: Servers,
    run_id: str,
    page_errors: list[str],
) -> None:
    host, missing = serve_broken_bundle(servers, bundle_dir, tmp_path)
    page.goto(host + "/t/app.html")
    page.wait_for_function("() => !!window.pyauthWeb")
    message = page.evaluate("() => pyauthWeb.ready.then(() => null, (e) => e.message)")
    assert message and "missing bundle asset" in message and missing.name in message
    status = page.evaluate(
        "(u) => pyauthWeb.fetch(u).then((r) => r.status)", f"{servers.realm}api/degraded-{run_id}"
    )
    assert status == 401  # sent, unauthenticated: the host's 401 handling takes over
    assert page_errors == []
