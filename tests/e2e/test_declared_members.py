"""Issue 12 item 2, at run time: the members `web/pyauth-web.d.ts` declares for
`window.pyauthWeb` (and its `config`) are exactly those the real object has, and the bundle
serves the declarations."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Page
from support import Servers, open_app

DTS = Path(__file__).resolve().parents[2] / "web" / "pyauth-web.d.ts"


def declared(interface: str) -> set[str]:
    """Member names of ``interface`` in the declarations (one member per line there)."""
    text = DTS.read_text()
    body = re.search(rf"\binterface {interface} \{{\n(.*?)\n    \}}", text, re.S)
    assert body, f"no interface {interface} in {DTS}"
    names = re.findall(r"^      (?:readonly )?(\w+)\??[(:]", body.group(1), re.M)
    return set(names)


def test_declared_members_are_the_real_ones(page: Page, servers: Servers) -> None:
    open_app(page, servers)
    real = set(page.evaluate("() => Object.keys(window.pyauthWeb)"))
    assert declared("Api") == real
    assert declared("Config") == set(page.evaluate("() => Object.keys(pyauthWeb.config)"))
    served = page.evaluate("(u) => fetch(u).then((r) => r.text())", f"{servers.host}/pyauth/pyauth-web.d.ts")
    assert served == DTS.read_text()
