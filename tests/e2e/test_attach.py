"""Issue 12 item 3: run inside an existing Pyodide. A page boots its own loadPyodide() from the
bundle and attaches it (data-pyodide="external" + pyauthWeb.attach); the runtime runs in that
interpreter: first paint through the worker, a refresh, and the host's Python state intact. A
Pyodide of another version is refused with a clear error."""

from __future__ import annotations

import json
from typing import Any

from support import STORAGE_KEY, Servers, open_app, refreshes_once, wait_ready


def test_the_runtime_runs_in_the_hosts_pyodide(
    new_page: Any, servers: Servers, run_id: str, page_errors: list[str]
) -> None:
    page = new_page()
    open_app(page, servers)  # the worker is installed and controls the origin's pages
    token = servers.token(ttl=3600)
    page.evaluate("([k, v]) => localStorage.setItem(k, v)",
                  [STORAGE_KEY, json.dumps({servers.realm: token})])
    page.goto(f"{servers.host}/t/attach.html?run={run_id}")
    wait_ready(page)
    assert page.evaluate("() => window.attachResult") == "attached"
    # One interpreter: the runtime's is the host's, with the host's globals in it.
    assert page.evaluate("async () => pyauthWeb.pyodide === await window.hostPyodide")
    assert page.evaluate("() => pyauthWeb.pyodide.globals.get('host_value')") == 42
    # First paint: the image in the HTML went through the worker, which waited ('pending').
    page.wait_for_function("() => document.getElementById('card').naturalWidth > 0",
                           timeout=15_000)
    seen = [e["auth"] for e in servers.realm_log.for_path(f"/img/attach-{run_id}")]
    assert seen[-1] == f"Bearer {token}"
    # One refresh, as in a page of its own.
    refreshes_once(page, servers)
    assert page_errors == []


def test_images_that_fell_through_while_the_runtime_was_late_are_recovered(
    new_page: Any, servers: Servers, run_id: str
) -> None:
    """A controlled page whose runtime answers after the worker's 3 s budget (the host hands
    its Pyodide over 4 s late): the image in the HTML falls through (401) and is re-requested
    once, with the token, when the runtime is ready."""
    page = new_page()
    open_app(page, servers)
    token = servers.token(ttl=3600)
    page.evaluate("([k, v]) => localStorage.setItem(k, v)",
                  [STORAGE_KEY, json.dumps({servers.realm: token})])
    page.goto(f"{servers.host}/t/attach.html?run={run_id}&hold=4000")
    wait_ready(page)
    page.wait_for_function("() => document.getElementById('card').naturalWidth > 0",
                           timeout=15_000)
    seen = [e["auth"] for e in servers.realm_log.for_path(f"/img/attach-{run_id}")]
    assert seen == [None, f"Bearer {token}"]  # fell through once, then recovered once
    recovered = page.evaluate("() => window.__events.filter((e) => e.kind === 'recovered')")
    assert [r["count"] for r in recovered] == [1]


def test_another_pyodide_version_is_refused_clearly(
    new_page: Any, servers: Servers, run_id: str
) -> None:
    page = new_page()
    page.goto(f"{servers.host}/t/attach.html?run={run_id}&fake=1")
    page.wait_for_function("() => window.attachResult !== undefined")
    message = page.evaluate("() => window.attachResult")
    assert "this Pyodide is 0.0.1, the bundle needs 314.0.7" in message
    assert page.evaluate("() => pyauthWeb.ready.then(() => null, (e) => e.message)") == message
    # attach() outside external mode is refused too.
    page.goto(f"{servers.host}/t/app.html")
    wait_ready(page)
    other = page.evaluate("() => pyauthWeb.attach({}).then(() => null, (e) => e.message)")
    assert "data-pyodide" in other
