"""Issue 10 item 6: version skew between page and worker after a deploy. Every message carries
the protocol version and every ack the worker's; a page that meets a worker of another version
(or one that never acks: protocol 1) warns once and asks the browser to update the registration.
Nothing reloads the page; images keep loading across the swap."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from support import LOAD_IMAGE, PAGES, STORAGE_KEY, Servers, auth_seen, wait_controlled, wait_ready

from pyauth_web.demo.servers import host_app
from pyauth_web.protocol import PROTOCOL_VERSION

FIXTURES = Path(__file__).with_name("fixtures")
ROOT = Path(__file__).resolve().parents[2]
IMG = LOAD_IMAGE
ACK_VERSION = """() => new Promise((resolve) => {
  navigator.serviceWorker.addEventListener('message', function on(e) {
    if (e.data && e.data.type === 'ack' && e.data.ack === 'probe') {
      navigator.serviceWorker.removeEventListener('message', on); resolve(e.data.v);
    }
  });
  navigator.serviceWorker.controller.postMessage({type: 'hello', app: 'probe-app', ack: 'probe'});
  setTimeout(() => resolve('no ack'), 2000);
})"""


def deployable_host(servers: Servers, bundle_dir: Path, tmp_path: Path) -> tuple[str, Path]:
    """A host origin serving a copy of the bundle whose ``sw.js`` the test rewrites (a deploy)."""
    root = tmp_path / "deploy"
    shutil.copytree(bundle_dir, root, symlinks=True)
    host = servers.thread.serve(
        host_app(root, issuer=servers.issuer, page_vars={"REALM": servers.realm},
                 extra_dirs={"t": PAGES})
    )
    return host, root / "sw.js"


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


def authenticated(servers: Servers, path: str) -> list[str | None]:
    return auth_seen(servers.realm_log, path)


def test_a_new_page_meeting_a_protocol_1_worker_ends_on_the_new_worker(
    page: Any, servers: Servers, bundle_dir: Path, tmp_path: Path, run_id: str,
    page_errors: list[str],
) -> None:
    host, sw_file = deployable_host(servers, bundle_dir, tmp_path)
    current = sw_file.read_text()
    sw_file.write_text((FIXTURES / "sw-protocol-1.js").read_text())  # the previous deploy
    page.goto(f"{host}/t/plain.html")
    page.evaluate("() => navigator.serviceWorker.register('/sw.js').then(() => navigator.serviceWorker.ready)")
    page.reload()
    wait_controlled(page)
    assert page.evaluate(ACK_VERSION) == "no ack"  # protocol 1 never acknowledged

    sw_file.write_text(current)  # the deploy; the next page carries the new loader
    seen = navigations(page)
    token = servers.token()
    page.evaluate("([k, v]) => localStorage.setItem(k, v)",
                  [STORAGE_KEY, f'{{"{servers.realm}": "{token}"}}'])
    page.goto(f"{host}/t/app.html")
    wait_ready(page)
    # The new worker takes control: with a fast start, after the page is ready (register() of
    # an unchanged URL does not update; the loader's update request, after v1 left its first
    # message unacknowledged, installs it).
    page.wait_for_function(
        f"async () => (await ({ACK_VERSION})()) === {PROTOCOL_VERSION}", timeout=15_000
    )
    path = f"/img/skew-new-page-{run_id}"
    assert page.evaluate(IMG, servers.realm + path[1:]) is True
    assert authenticated(servers, path) == [f"Bearer {token}"]
    assert len(seen) == 1  # the one navigation we made: no reload loop
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
    skew = [w for w in warnings if "speaks protocol" in w]
    assert len(skew) == 1 and f"protocol {newer}" in skew[0], warnings
    page.evaluate("() => pyauthWeb.reload()")
    assert len([w for w in warnings if "speaks protocol" in w]) == 1  # once
    path = f"/img/skew-after-{run_id}"
    assert page.evaluate(IMG, servers.realm + path[1:]) is True
    assert authenticated(servers, path) == [f"Bearer {token}"]
    assert seen == []  # never reloaded
    assert page_errors == []
