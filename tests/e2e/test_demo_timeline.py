"""Issue 12 item 4: the demo draws a live timeline per realm (plain SVG from the demo's own
files, no CDN). With two tabs open and a token inside its skew margin, one tab shows the refresh
it made, the other the new token from another tab, and the issuer saw one refresh."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from support import STALE_TTL, Servers, wait_ready

# Marks in the SVG, by their colour (pyauth_web/demo/static/timeline.js, MARKS).
COUNT = """(color) => document.querySelectorAll(`#timeline line[stroke="${color}"]`).length"""
HERE, OTHER = "#1a7f37", "#8250df"


def test_two_tabs_show_one_refresh_and_who_made_it(
    new_page: Any, servers: Servers, page_errors: list[str]
) -> None:
    tabs = [new_page(), new_page()]
    for tab in tabs:
        tab.set_viewport_size({"width": 1100, "height": 1300})
        tab.goto(f"{servers.host}/")
        wait_ready(tab)
        tab.wait_for_function("() => document.querySelector('#timeline svg rect') !== null")
    since = time.time()
    stale = servers.token(ttl=STALE_TTL)  # already inside the default skew margin: refreshed at once
    tabs[0].evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [servers.realm, stale])
    for tab in tabs:
        tab.wait_for_function(
            f"() => ({COUNT})('{HERE}') + ({COUNT})('{OTHER}') >= 1", timeout=15_000)
    here = [tab.evaluate(COUNT, HERE) for tab in tabs]
    assert len(servers.issuer.refreshes(since)) == 1
    assert sorted(here) == [0, 1]  # one tab refreshed ...
    watcher = tabs[here.index(0)]  # ... the other shows the new token as another tab's
    watcher.wait_for_function(f"() => ({COUNT})('{OTHER}') >= 1", timeout=5_000)
    assert "open this page in a second tab" in tabs[0].inner_text("body").lower()
    shot = os.environ.get("PYAUTH_WEB_DEMO_SCREENSHOT")  # README's picture: set it to regenerate
    if shot:
        tabs[0].screenshot(path=str(Path(shot)), full_page=True)
    assert page_errors == []
