"""Issue 10 item 4: redirects of authenticated requests. A realm URL redirecting to a foreign
origin never carries the header there (Chromium drops it on a cross-origin redirect, and the
realm's redirect mode is checked); one redirecting inside its (origin-wide) realm stays
authenticated. Path-scoped realms: ``test_worker_scope.py::test_redirects_follow_the_realm_redirect_mode``."""

from __future__ import annotations

from urllib.parse import quote

from playwright.sync_api import Page
from support import Servers, wait_controlled, wait_ready

LOAD = """(u) => new Promise((resolve) => {
  const img = new Image();
  img.onload = () => resolve('load');
  img.onerror = () => resolve('error');
  img.src = u;
})"""
FETCH = "(u) => pyauthWeb.fetch(u).then((r) => r.status, () => 'error')"


def test_redirects_to_a_foreign_origin_drop_the_token_and_same_realm_ones_keep_it(
    page: Page, servers: Servers, run_id: str
) -> None:
    page.goto(f"{servers.host}/t/app.html")
    wait_ready(page)
    wait_controlled(page)
    token = servers.token()
    page.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [servers.realm, token])
    foreign = f"{servers.other}img/foreign-{run_id}"
    same = f"/img/same-{run_id}"
    for how, run in (("img", LOAD), ("fetch", FETCH)):
        page.evaluate(run, f"{servers.realm}x/go/out-{how}-{run_id}?to={quote(foreign + how)}")
        page.evaluate(run, f"{servers.realm}x/go/in-{how}-{run_id}?to={quote(same + how)}")
        first = servers.realm_log.for_path(f"/x/go/out-{how}-{run_id}")
        assert [e["auth"] for e in first] == [f"Bearer {token}"], how  # the realm URL: authenticated
        at_foreign = servers.other_log.for_path(f"/img/foreign-{run_id}{how}")
        assert at_foreign and all(e["auth"] is None for e in at_foreign), (how, at_foreign)
        inside = servers.realm_log.for_path(f"{same}{how}")
        assert [e["auth"] for e in inside] == [f"Bearer {token}"], (how, inside)
    assert all(e["auth"] is None for e in servers.other_log.entries)
