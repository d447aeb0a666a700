"""Issue 11: the first visit works. Requests made before the worker controls the page go out
without the header; the loader re-requests the realm images among them once, through the worker,
as soon as the worker controls the page and the runtime answers."""

from __future__ import annotations

import json
import time
from typing import Any

from playwright.sync_api import BrowserContext, Page
from support import STORAGE_KEY, Servers, wait_controlled, wait_ready, wait_until

REALM_IMAGES = 10
LOADED = """() => Array.from(document.querySelectorAll('#realm img'))
  .filter((img) => img.complete && img.naturalWidth > 0).length"""
RECOVERED = "() => window.__events.filter((e) => e.kind === 'recovered')"


def sign_in(page: Page, servers: Servers) -> str:
    """The host's login page stored a token; it ran no loader (no worker registered yet)."""
    token = servers.token(ttl=3600)
    page.goto(f"{servers.host}/pyauth/manifest.json")  # a document of the origin, no runtime
    page.evaluate("([k, v]) => localStorage.setItem(k, v)",
                  [STORAGE_KEY, json.dumps({servers.realm: token})])
    return token


def wait_all_loaded(page: Page, servers: Servers, run: str) -> None:
    """Until the 10 realm images have loaded (15 s); on a timeout, say what was seen."""
    try:
        page.wait_for_function(f"() => ({LOADED})() === {REALM_IMAGES}", timeout=15_000)
    except Exception as exc:
        state = page.evaluate("""() => ({controlled: !!navigator.serviceWorker.controller,
          events: window.__events, images: Array.from(document.querySelectorAll('#realm img'))
            .map((i) => [i.currentSrc.split('/').pop(), i.complete, i.naturalWidth])})""")
        raise AssertionError(f"{exc}\npage: {state}\nrealm saw: {requests_for(servers, run)}") from exc


def requests_for(servers: Servers, run: str) -> dict[str, list[str | None]]:
    seen: dict[str, list[str | None]] = {}
    for entry in servers.realm_log.entries:
        if f"-{run}" in entry["path"]:
            seen.setdefault(entry["path"], []).append(entry["auth"])
    return seen


def test_first_visit_shows_every_realm_image_without_a_reload(
    new_page: Any, servers: Servers, run_id: str, page_errors: list[str]
) -> None:
    page = new_page()
    token = sign_in(page, servers)
    started = time.time()
    page.goto(f"{servers.host}/t/first-visit.html?run={run_id}")
    wait_all_loaded(page, servers, run_id)
    took = time.time() - started
    assert page.evaluate("() => navigator.serviceWorker.controller !== null")
    seen = requests_for(servers, run_id)
    for i in range(REALM_IMAGES):
        # once without the header (before the worker controlled the page), once through it
        assert seen[f"/img/fv-{run_id}-{i}"] == [None, f"Bearer {token}"], i
    # The realm URL that refuses every token: re-requested once, so two requests in all.
    wait_until(lambda: len(requests_for(servers, run_id).get(f"/api/reject/fv-{run_id}", [])) >= 2,
               5, "the refused image's second request")
    assert len(requests_for(servers, run_id)[f"/api/reject/fv-{run_id}"]) == 2
    # The failing image on a non-realm origin: requested once, never again, never with a token.
    foreign = [e for e in servers.other_log.entries if e["path"] == f"/img/foreign-{run_id}"]
    assert [e["auth"] for e in foreign] == [None]
    recovered = page.evaluate(RECOVERED)
    assert [r["count"] for r in recovered] == [REALM_IMAGES + 1]
    print(f"first visit: {REALM_IMAGES}/{REALM_IMAGES} realm images in {took:.2f} s")
    assert page_errors == []


def test_recovery_can_be_turned_off(
    new_page: Any, servers: Servers, run_id: str, page_errors: list[str]
) -> None:
    page = new_page()
    sign_in(page, servers)
    page.goto(f"{servers.host}/t/first-visit.html?run={run_id}&recover=off")
    wait_ready(page)
    wait_controlled(page)
    # A later realm image (through the worker) loads, so the page is working ...
    page.wait_for_function(
        """(u) => new Promise((resolve) => { const img = new Image(); img.onload = () => resolve(true);
           img.onerror = () => resolve(false); img.src = u; })""",
        arg=f"{servers.realm}img/fv-{run_id}-late")
    # ... but the images that failed at first paint were left alone.
    assert page.evaluate(LOADED) == 0
    seen = requests_for(servers, run_id)
    assert all(seen[f"/img/fv-{run_id}-{i}"] == [None] for i in range(REALM_IMAGES))
    assert page.evaluate(RECOVERED) == []
    assert page_errors == []


def test_an_uncontrolled_load_while_the_worker_is_active_recovers_too(
    context: BrowserContext, new_page: Any, servers: Servers, run_id: str,
    page_errors: list[str],
) -> None:
    page = new_page()
    page.add_init_script("window.__controlledAtStart = !!navigator.serviceWorker.controller")
    token = sign_in(page, servers)
    page.goto(f"{servers.host}/t/first-visit.html?run={run_id}-a")
    wait_all_loaded(page, servers, f"{run_id}-a")
    # Shift+Reload: the navigation and its subresources bypass the (active) worker.
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.setBypassServiceWorker", {"bypass": True})
    page.goto(f"{servers.host}/t/first-visit.html?run={run_id}-b")
    assert page.evaluate("() => window.__controlledAtStart") is False  # loaded uncontrolled
    cdp.send("Network.setBypassServiceWorker", {"bypass": False})
    cdp.detach()
    wait_all_loaded(page, servers, f"{run_id}-b")
    assert page.evaluate("() => navigator.serviceWorker.controller !== null")
    seen = requests_for(servers, f"{run_id}-b")
    for i in range(REALM_IMAGES):
        assert seen[f"/img/fv-{run_id}-b-{i}"] == [None, f"Bearer {token}"], i
    assert page_errors == []
