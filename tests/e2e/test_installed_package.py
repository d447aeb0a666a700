"""Issue 12 item 1: the installed package is self-sufficient. The wheel is built from the
sdist, installed in a fresh venv outside the checkout, and `pyauth-web bundle` runs there with an empty
cache (it fetches the pinned Pyodide and wheels, one line per download) and ships the installed
package itself; the bundle then passes a first-paint and a refresh check in Chromium."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import pytest
from support import PAGES, STORAGE_KEY, Servers, refreshes_once, wait_ready

from pyauth_web.assets import SOURCE_ROOT, default_cache
from pyauth_web.demo.servers import host_app


def run(cmd: list[str], cwd: Path, timeout: float = 300) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def venv(installed_bundle: tuple[Path, str]) -> Path:
    return installed_bundle[0].parent / "venv"


@pytest.fixture(scope="module")
def installed_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(the bundle made by the installed package, the command's output)."""
    work = tmp_path_factory.mktemp("installed")
    # `build` makes the sdist, then the wheel from the sdist (not from the checkout).
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(work / "dist"),
         str(SOURCE_ROOT)], cwd=work)
    (wheel,) = (work / "dist").glob("pyauth_web-*.whl")
    assert len(list((work / "dist").glob("pyauth_web-*.tar.gz"))) == 1
    run([sys.executable, "-m", "venv", str(work / "venv")], cwd=work)
    pip = work / "venv" / "bin" / "pip"
    run([str(pip), "install", "-q", f"{wheel}[demo]"], cwd=work)
    cli = str(work / "venv" / "bin" / "pyauth-web")
    assert run([cli, "--version"], cwd=work).strip() == "pyauth-web 0.1.0"
    # The compressed copies of Pyodide's files are a derived cache (by content digest, ~45 s of
    # brotli 11 to make): seeded from the checkout's, so this run's time goes to what is tested.
    # Pyodide and the wheels are still downloaded into the empty cache.
    compressed = default_cache() / "compressed"
    if compressed.is_dir():
        shutil.copytree(compressed, work / "cache" / "compressed")
    output = run([cli, "--cache", str(work / "cache"), "bundle", str(work / "out")], cwd=work)
    return work / "out", output


def test_the_installed_package_bundles_itself(installed_bundle: tuple[Path, str]) -> None:
    out, output = installed_bundle
    downloads = [line for line in output.splitlines() if line.startswith("pyauth-web: fetching")]
    assert len(downloads) == 3, output  # Pyodide, micropip, PyJWT: one line each
    manifest = json.loads((out / "manifest.json").read_text())
    (own,) = [w["file"] for w in manifest["wheels"] if w["name"] == "pyauth_web"]
    with zipfile.ZipFile(out / "wheels" / own) as wheel:
        names = wheel.namelist()
    assert "pyauth_web/browser/runtime.py" in names
    static = {"pyauth-web.js", "sw.js", "pyauth-web.d.ts", "make-snapshot.mjs"}
    assert {f"pyauth_web/_static/{f}" for f in static} <= set(names)  # via the sdist
    assert any(n.endswith(".dist-info/RECORD") for n in names)
    assert not any(n.endswith(".pyc") for n in names)
    for asset in ("pyauth-web.js", "sw.js", "pyauth-web.d.ts"):
        assert (out / asset).is_file()


def test_the_installed_bundle_paints_and_refreshes(
    installed_bundle: tuple[Path, str], new_page: Any, servers: Servers, run_id: str,
    page_errors: list[str],
) -> None:
    out, _ = installed_bundle
    host = servers.thread.serve(host_app(
        out, issuer=servers.issuer, page_vars={"REALM": servers.realm}, extra_dirs={"t": PAGES}
    ))
    page = new_page()
    token = servers.token(ttl=3600)
    page.goto(f"{host}/pyauth/manifest.json")
    page.evaluate("([k, v]) => localStorage.setItem(k, v)",
                  [STORAGE_KEY, json.dumps({servers.realm: token})])
    page.goto(f"{host}/t/first-visit.html?run={run_id}")
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('#realm img'))"
        ".every((i) => i.complete && i.naturalWidth > 0)", timeout=20_000)
    # One refresh: a token inside its skew margin is refreshed once by the refresh URL.
    page.goto(f"{host}/t/refresh.html?refresh=/refresh")
    wait_ready(page)
    refreshes_once(page, servers)
    assert page_errors == []


def test_the_installed_demo_serves_its_pages(venv: Path, installed_bundle: tuple[Path, str]) -> None:
    """`pyauth-web demo` (with the demo extra) runs without a source tree."""
    work = venv.parent
    port = free_port()
    demo = subprocess.Popen(
        [str(venv / "bin" / "pyauth-web"), "--cache", str(work / "cache"), "demo", "--port", str(port)],
        cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        assert demo.stdout is not None
        deadline = time.monotonic() + 120
        line = ""
        while "open http" not in line:  # the demo prints its address once it listens
            assert time.monotonic() < deadline and demo.poll() is None, line
            line = demo.stdout.readline()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as resp:
            assert resp.status == 200 and "pyauth-web.js" in resp.read().decode()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/pyauth/manifest.json", timeout=10) as resp:
            assert json.loads(resp.read())["snapshot"] is not None
    finally:
        demo.terminate()
        demo.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
