"""Issue 10 item 6: version skew between page and worker after a deploy. Every message carries
the protocol version and every ack the worker's; a page that meets a worker of another version
(or one that never acks: protocol 1) warns once and asks the browser to update the registration.
Nothing reloads the page; images keep loading across the swap. The reverse: a page of the old
bundle (protocol 1, built from commit 8584b32) still open when the new worker takes over is
served from its own messages and answers, and kept apart from every other client."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web
from support import (
    LOAD_IMAGE,
    PAGES,
    STORAGE_KEY,
    Servers,
    deployable_copy,
    wait_controlled,
    wait_ready,
    wait_until,
)

from pyauth_web import assets
from pyauth_web.demo.servers import host_app
from pyauth_web.protocol import PROTOCOL_VERSION

FIXTURES = Path(__file__).with_name("fixtures")
ROOT = Path(__file__).resolve().parents[2]
IMG = LOAD_IMAGE

PROTOCOL_1_COMMIT = "8584b32"  # the last commit whose loader and worker speak protocol 1
ACK_VERSION = """() => new Promise((resolve) => {
  navigator.serviceWorker.addEventListener('message', function on(e) {
    if (e.data && e.data.type === 'ack' && e.data.ack === 'probe') {
      navigator.serviceWorker.removeEventListener('message', on); resolve(e.data.v);
    }
  });
  navigator.serviceWorker.controller.postMessage({type: 'hello', app: 'probe-app', ack: 'probe'});
  setTimeout(() => resolve('no ack'), 2000);
})"""


def image(servers: Servers, page: Any, name: str) -> tuple[bool, list[str | None]]:
    """Load the realm image ``/img/NAME`` in ``page``: (it loaded, the headers the realm saw)."""
    path = f"/img/{name}"
    loaded = page.evaluate(IMG, servers.realm + path[1:])
    return loaded, servers.realm_auth(path)


@pytest.fixture(scope="module")
def protocol_1_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundle as commit 8584b32 made it (its loader, worker and Python package, built by its
    own ``assets.bundle``; Pyodide and the other wheels are the same pins as today's)."""
    if subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{PROTOCOL_1_COMMIT}^{{commit}}"],
                      capture_output=True, timeout=30).returncode != 0:
        pytest.skip(f"needs the git history (commit {PROTOCOL_1_COMMIT}) to build the old bundle")
    work = tmp_path_factory.mktemp("protocol-1")

    def run(*cmd: str, **kw: Any) -> bytes:
        proc = subprocess.run(cmd, capture_output=True, timeout=120, **kw)
        assert proc.returncode == 0, f"{' '.join(cmd)}: {proc.stderr.decode()[-2000:]}"
        return proc.stdout

    archive = run("git", "-C", str(ROOT), "archive", PROTOCOL_1_COMMIT)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(work / "src", filter="data")
    # Its wheel is built here, not in the shared cache's dist/ (where today's wheel lives).
    run(sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(work / "dist"),
        str(work / "src"))
    wheel = next((work / "dist").glob("pyauth_web-*.whl"))
    make = ("import sys; from pathlib import Path; from pyauth_web import assets; "
            "assets.bundle(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))")
    run(sys.executable, "-c", make, str(work / "bundle"), str(assets.default_cache()), str(wheel),
        cwd=work / "src", env={**os.environ, "PYTHONPATH": str(work / "src")})
    return work / "bundle"


def deployable_host(
    servers: Servers, bundle_dir: Path, tmp_path: Path, released: threading.Event | None = None
) -> tuple[str, Path]:
    """A host origin serving a copy of the bundle whose ``sw.js`` the test rewrites (a deploy).
    With ``released``, ``sw.js`` is answered only once that is set (at most 30 s later): the
    browser's own update checks cannot install the deploy before the test lets them."""
    root = tmp_path / "deploy"
    sw_file = deployable_copy(bundle_dir, root)
    app = host_app(root, issuer=servers.issuer, page_vars={"REALM": servers.realm},
                   extra_dirs={"t": PAGES})
    if released is not None:
        gate = released

        @web.middleware
        async def hold(request: web.Request, handler: Any) -> web.StreamResponse:
            if request.path == "/sw.js":
                await asyncio.get_running_loop().run_in_executor(None, gate.wait, 30)
            return await handler(request)

        app.middlewares.append(hold)
    return servers.thread.serve(app), sw_file


def wait_for_warning(page: Any, warnings: list[str], text: str) -> None:
    """Until a console warning containing ``text`` was seen (15 s at most)."""
    if not any(text in w for w in warnings):
        page.wait_for_event("console", lambda m: m.type == "warning" and text in m.text,
                            timeout=15_000)


def wait_for_worker_version(page: Any, version: int) -> None:
    """Until the registration has settled (nothing installing or waiting: the loader's one
    update request may install another copy of the new worker) and the worker controlling the
    page acknowledges with protocol ``version`` (this very probe's ack: the loader's own
    messages also reach a new worker before it takes control)."""
    page.wait_for_function(
        """(v) => new Promise(async (resolve) => {
          const reg = await navigator.serviceWorker.getRegistration();
          const c = navigator.serviceWorker.controller;
          if (!reg || reg.installing || reg.waiting || !c || reg.active !== c || c.state !== 'activated') {
            resolve(false);
            return;
          }
          const id = `probe-${Math.random()}`;
          navigator.serviceWorker.addEventListener('message', (e) => {
            if (e.data && e.data.type === 'ack' && e.data.ack === id && e.data.v === v) resolve(true);
          });
          navigator.serviceWorker.controller.postMessage({type: 'hello', app: 'x', ack: id});
          setTimeout(() => resolve(false), 500);
        })""",
        arg=version,
        timeout=15_000,
    )


def navigations(page: Any) -> list[str]:
    seen: list[str] = []
    page.on("framenavigated", lambda f: seen.append(f.url) if f == page.main_frame else None)
    return seen


def test_a_new_page_meeting_a_protocol_1_worker_ends_on_the_new_worker(
    page: Any, servers: Servers, bundle_dir: Path, tmp_path: Path, run_id: str,
    page_errors: list[str], request: pytest.FixtureRequest,
) -> None:
    released = threading.Event()
    released.set()
    request.addfinalizer(released.set)  # a held request never outlives the test
    host, sw_file = deployable_host(servers, bundle_dir, tmp_path, released)
    warnings: list[str] = []
    page.on("console", lambda m: warnings.append(m.text) if m.type == "warning" else None)
    current = sw_file.read_text()
    sw_file.write_text((FIXTURES / "sw-protocol-1.js").read_text())  # the previous deploy
    page.goto(f"{host}/t/plain.html")
    page.evaluate("() => navigator.serviceWorker.register('/sw.js').then(() => navigator.serviceWorker.ready)")
    page.reload()
    wait_controlled(page)
    assert page.evaluate(ACK_VERSION) == "no ack"  # protocol 1 never acknowledged

    # The deploy; the next page carries the new loader. The browser checks for an update at the
    # navigation and often installs the new worker before the loader's first message (with
    # data-sw, register() waits for that check): the deploy's sw.js is held back until the page
    # has met the protocol-1 worker (its message went unacknowledged). The page is one whose host
    # registers the worker (no data-sw): a held check would hold register() too.
    released.clear()
    sw_file.write_text(current)
    seen = navigations(page)
    token = servers.token()
    page.evaluate("([k, v]) => localStorage.setItem(k, v)",
                  [STORAGE_KEY, f'{{"{servers.realm}": "{token}"}}'])
    page.goto(f"{host}/t/host-registers.html")
    wait_ready(page)
    wait_for_warning(page, warnings, "did not acknowledge")
    released.set()
    # The new worker takes control (the browser's update check, or the loader's update request
    # after v1 left its first message unacknowledged, installs it).
    page.wait_for_function(
        f"async () => (await ({ACK_VERSION})()) === {PROTOCOL_VERSION}", timeout=15_000
    )
    assert image(servers, page, f"skew-new-page-{run_id}") == (True, [f"Bearer {token}"])
    assert len(seen) == 1  # the one navigation we made: no reload loop
    ours = [w for w in warnings if w.startswith("pyauth-web:")]
    assert len(ours) == 1 and "did not acknowledge" in ours[0], warnings  # one, for protocol 1
    assert page_errors == []


def test_a_page_meeting_a_newer_worker_warns_once_and_keeps_working(
    page: Any, servers: Servers, bundle_dir: Path, tmp_path: Path, run_id: str,
    page_errors: list[str],
) -> None:
    host, sw_file = deployable_host(servers, bundle_dir, tmp_path)
    current = sw_file.read_text()
    assert f"const PROTOCOL_VERSION = {PROTOCOL_VERSION};" in current
    warnings: list[str] = []
    page.on("console", lambda m: warnings.append(m.text) if m.type == "warning" else None)
    page.goto(f"{host}/t/app.html")
    wait_ready(page)
    wait_controlled(page)
    token = servers.token()
    page.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [servers.realm, token])
    assert page.evaluate(IMG, f"{servers.realm}img/skew-before-{run_id}") is True
    seen = navigations(page)

    newer = PROTOCOL_VERSION + 1  # a later deploy's worker, while this page stays open
    sw_file.write_text(current.replace(f"const PROTOCOL_VERSION = {PROTOCOL_VERSION};",
                                       f"const PROTOCOL_VERSION = {newer};"))
    page.evaluate("() => navigator.serviceWorker.getRegistration().then((r) => r.update())")
    wait_for_worker_version(page, newer)
    page.evaluate("() => pyauthWeb.reload()")  # any message: acks now carry the newer version
    # (console events reach the test a moment after the page logged them)
    wait_until(lambda: any("speaks protocol" in w for w in warnings), 5, "the warning")
    skew = [w for w in warnings if "speaks protocol" in w]
    assert len(skew) == 1 and f"protocol {newer}" in skew[0], warnings
    page.evaluate("() => pyauthWeb.reload()")
    assert len([w for w in warnings if "speaks protocol" in w]) == 1  # once
    assert image(servers, page, f"skew-after-{run_id}") == (True, [f"Bearer {token}"])
    assert seen == []  # never reloaded
    assert page_errors == []


ACROSS_THE_SWAP = """async ([base, every, after, wanted, limit]) => {
  // An image every `every` ms from the update request on, until `wanted` images started at least
  // `after` ms after the new worker took control (or `limit` ms passed). Each row:
  // [index, ms since the update request, ms since the takeover or null, loaded].
  const load = (u) => new Promise((resolve) => {
    const img = new Image();
    img.onload = () => resolve(img.naturalWidth > 0);
    img.onerror = () => resolve(false);
    img.src = u;
  });
  const t0 = performance.now();
  // The browser's own update check may have installed the deploy already: then from now on.
  let swapped = navigator.serviceWorker.controller === window.oldWorker ? null : t0;
  navigator.serviceWorker.addEventListener('controllerchange', () => {
    swapped ??= performance.now();
  });
  navigator.serviceWorker.getRegistration().then((reg) => reg.update());  // the browser's own check
  const rows = [];
  let late = 0;
  for (let i = 0; late < wanted && performance.now() - t0 < limit; i++) {
    const start = performance.now();
    const since = swapped === null ? null : start - swapped;
    if (since !== null && since >= after) late++;
    const ok = await load(base + i);
    rows.push([i, Math.round(start - t0), since === null ? null : Math.round(since), ok]);
    await new Promise((resolve) => { setTimeout(resolve, every); });
  }
  return rows;
}"""
NO_APP_ACK = """() => new Promise((resolve) => {  // a message naming no app: acked, never joins one
  navigator.serviceWorker.addEventListener('message', (e) => {
    if (e.data && e.data.type === 'ack' && e.data.ack === 'no-app') resolve(e.data.v);
  });
  navigator.serviceWorker.controller.postMessage({type: 'probe', ack: 'no-app'});
  setTimeout(() => resolve('no ack'), 2000);
})"""
SWAP_MS = 1000  # requests this soon after the takeover may fall through (none did, measured)


# Two tabs of the old bundle boot without a snapshot, then a tab of the new one: 30-45 s here on
# a loaded 2-CPU machine, plus building the old bundle (a few seconds); more than the default.
@pytest.mark.timeout(180)
def test_an_open_protocol_1_page_keeps_its_images_after_the_new_worker_takes_over(
    page: Any, new_page: Any, servers: Servers, bundle_dir: Path, protocol_1_bundle: Path,
    tmp_path: Path, run_id: str, page_errors: list[str],
) -> None:
    """The reverse skew: tabs of the old bundle (loader, runtime and worker of protocol 1, whose
    messages and answers name no app), one with a token, are open when the new bundle is
    deployed and the new worker takes over. Its images keep their header; two old apps of the
    origin never get each other's token, a page without the runtime gets none; a logout in the
    old tab, and one in a tab of the new bundle, both stick; nothing reloads."""
    root = tmp_path / "site"
    shutil.copytree(protocol_1_bundle, root)
    host = servers.thread.serve(host_app(root, issuer=servers.issuer,
                                         page_vars={"REALM": servers.realm},
                                         extra_dirs={"t": PAGES}))
    # The old loader makes its memory snapshot in the page when it has none: a second boot this
    # test does not need (data-snapshot="off"). Another app of the origin: its own storage key.
    other = new_page()
    for tab, key in ((page, STORAGE_KEY), (other, f"other-app-{run_id}")):  # one boot at a time
        tab.goto(f"{host}/t/app-no-snapshot.html?key={key}")
        wait_ready(tab)
        wait_controlled(tab)
    assert page.evaluate(NO_APP_ACK) == "no ack"  # the protocol-1 worker
    token = servers.token()
    page.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [servers.realm, token])
    assert image(servers, page, f"old-page-before-{run_id}") == (True, [f"Bearer {token}"])
    seen = navigations(page)
    page.evaluate("() => { window.oldWorker = navigator.serviceWorker.controller; }")

    shutil.copytree(bundle_dir, root, dirs_exist_ok=True)  # the deploy: the whole new bundle
    rows = page.evaluate(ACROSS_THE_SWAP,
                         [f"{servers.realm}img/old-page-{run_id}-", 100, SWAP_MS, 10, 20_000])
    assert page.evaluate(NO_APP_ACK) == PROTOCOL_VERSION  # the new worker controls the old page
    headers = {i: servers.realm_auth(f"/img/old-page-{run_id}-{i}") for i, *_ in rows}
    late = [i for i, _, since, _ in rows if since is not None and since >= SWAP_MS]
    assert len(late) >= 10, rows  # the takeover happened, and 10 images came after it
    outside = [i for i, _, since, _ in rows if since is None or since >= SWAP_MS]
    assert {i: headers[i] for i in outside} == {i: [f"Bearer {token}"] for i in outside}, rows
    assert all(ok for i, _, _, ok in rows if i in outside), rows

    # The other old tab signs in now (protocol 1 kept one token per realm for the whole origin,
    # and asked any tab on a miss); each keeps its own.
    other_token = servers.token()
    other.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [servers.realm, other_token])
    assert image(servers, other, f"old-page-other-app-{run_id}") == (True, [f"Bearer {other_token}"])
    other.close()
    assert image(servers, page, f"old-page-after-other-app-{run_id}") == (True, [f"Bearer {token}"])

    # A page of the origin without the runtime gets no token.
    plain = new_page()
    plain.goto(f"{host}/t/plain.html?run=old-{run_id}")
    wait_controlled(plain)
    assert image(servers, plain, f"old-page-plain-{run_id}") == (False, [None])
    plain.close()

    # Its own logout sticks; a new sign-in in it is served again.
    page.evaluate("() => pyauthWeb.clearTokens()")
    assert image(servers, page, f"old-page-logout-{run_id}") == (False, [None])
    token = servers.token()
    page.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [servers.realm, token])
    assert image(servers, page, f"old-page-again-{run_id}") == (True, [f"Bearer {token}"])

    # A logout in a tab of the new bundle (the same app: its storage) reaches the old page too.
    fresh = new_page()
    fresh.goto(f"{host}/t/app.html")
    wait_ready(fresh)
    fresh.evaluate("() => pyauthWeb.clearTokens()")
    fresh.close()
    assert image(servers, page, f"old-page-other-logout-{run_id}") == (False, [None])

    # The host logs the user out itself, on a page without the runtime (the old runtime never
    # tells the worker about storage changes): the next page of the new bundle finds storage
    # changed, and the worker drops the old tab's copy with its own.
    token = servers.token()
    page.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [servers.realm, token])
    assert image(servers, page, f"old-page-before-host-logout-{run_id}") == (True, [f"Bearer {token}"])
    plain = new_page()
    plain.goto(f"{host}/t/plain.html?run=host-logout-{run_id}")
    plain.evaluate("(k) => localStorage.removeItem(k)", STORAGE_KEY)
    fresh = new_page()
    fresh.goto(f"{host}/t/app.html")
    wait_ready(fresh)  # its hello carries the changed storage's fingerprint
    fresh.close()
    plain.close()
    path = f"/img/old-page-host-logout-{run_id}"
    page.evaluate(IMG, servers.realm + path[1:])
    seen_auth = servers.realm_auth(path)
    assert seen_auth and all(auth is None for auth in seen_auth), seen_auth

    # A DPoP-bound token (cnf.jkt) in the old tab, which knows nothing of DPoP: never Bearer.
    bound = jwt.encode({"sub": "u", "exp": int(time.time()) + 300, "cnf": {"jkt": "A" * 43}},
                       servers.issuer.secret, algorithm="HS256")
    page.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [servers.realm, bound])
    path = f"/img/old-page-bound-{run_id}"
    page.evaluate(IMG, servers.realm + path[1:])
    seen_auth = servers.realm_auth(path)
    assert seen_auth and not any(auth and auth.startswith("Bearer") for auth in seen_auth), seen_auth
    assert seen == []  # never reloaded
    assert page_errors == []


REGISTER_WAITS = """() => Promise.race([
  navigator.serviceWorker.register('/sw.js').then(() => 'resolved'),
  new Promise((resolve) => setTimeout(() => resolve('waiting'), 500))])"""


def test_a_logout_while_the_update_check_holds_register_reaches_the_worker(
    page: Any, servers: Servers, bundle_dir: Path, tmp_path: Path, run_id: str,
    page_errors: list[str], request: pytest.FixtureRequest,
) -> None:
    """With data-sw the loader's register() waits for the browser's update check; a slow sw.js
    (a deploy being fetched) must not make the loader drop its messages meanwhile: the
    registration that exists already takes them, so a logout reaches the worker at once."""
    released = threading.Event()
    released.set()
    request.addfinalizer(released.set)  # a held request never outlives the test
    host, sw_file = deployable_host(servers, bundle_dir, tmp_path, released)
    page.goto(f"{host}/t/app.html")  # first visit: installs the worker
    wait_ready(page)
    wait_controlled(page)
    token = servers.token()
    page.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [servers.realm, token])
    before = f"/img/held-register-before-{run_id}"
    assert page.evaluate(IMG, servers.realm + before[1:]) is True
    assert servers.realm_auth(before) == [f"Bearer {token}"]

    released.clear()  # a deploy: its sw.js is slow to arrive (held until the test lets it go)
    sw_file.write_text(sw_file.read_text() + "\n// deploy\n")
    # Another tab's update check is fetching it: this page's register() queues behind it.
    other = page.context.new_page()
    other.goto(f"{host}/t/plain.html")
    other.evaluate("() => navigator.serviceWorker.getRegistration().then((r) => { r.update(); })")
    page.goto(f"{host}/t/app.html")
    wait_ready(page)
    wait_controlled(page)
    assert page.evaluate(REGISTER_WAITS) == "waiting"  # the situation this test is about
    t0 = time.monotonic()
    page.evaluate("() => pyauthWeb.clearTokens()")
    took = time.monotonic() - t0
    after = f"/img/held-register-after-{run_id}"
    assert page.evaluate(IMG, servers.realm + after[1:]) is False  # 401: no token went
    seen = servers.realm_auth(after)
    assert seen and all(auth is None for auth in seen), seen
    assert took < 1.5, took  # acknowledged, not given up on after the 2 s bound
    released.set()
    assert page_errors == []


def test_a_realm_declared_dpop_bound_never_goes_as_bearer_to_a_protocol_1_tab(
    page: Any, new_page: Any, servers: Servers, bundle_dir: Path, protocol_1_bundle: Path,
    tmp_path: Path, run_id: str, page_errors: list[str],
) -> None:
    """Issue 22 item 4: a tab of the old bundle (protocol 1, which knows nothing of DPoP) still
    open after the deploy, and a tab of the new one whose script tag names the realm in
    data-dpop (its tokens are bound, though nothing in them says so). Whichever tab sets the
    token, the old tab's images never carry it as Bearer."""
    root = tmp_path / "site"
    shutil.copytree(protocol_1_bundle, root)
    host = servers.thread.serve(host_app(root, issuer=servers.issuer,
                                         page_vars={"REALM": servers.realm},
                                         extra_dirs={"t": PAGES}))
    page.goto(f"{host}/t/app-no-snapshot.html?key={STORAGE_KEY}")
    wait_ready(page)
    wait_controlled(page)
    shutil.copytree(bundle_dir, root, dirs_exist_ok=True)  # the deploy
    bound = new_page()
    bound.goto(f"{host}/t/app-dpop.html")
    wait_ready(bound)
    page.wait_for_function(f"({NO_APP_ACK})().then((v) => v === {PROTOCOL_VERSION})", timeout=20_000)
    for setter in (bound, page):
        token = servers.issuer.mint(servers.realm, 300, sub=f"bound-{id(setter)}")  # no cnf
        setter.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [servers.realm, token])
        page.wait_for_function("([u, t]) => pyauthWeb.getToken(u).then((v) => v === t)",
                               arg=[servers.realm, token], timeout=5_000)
        for i in range(3):
            path = f"/img/old-tab-bound-{id(setter)}-{i}-{run_id}"
            page.evaluate(IMG, servers.realm + path[1:])
            seen = servers.realm_auth(path)
            assert seen and not any(a and a.startswith("Bearer") for a in seen), (setter, seen)
    assert page_errors == []
