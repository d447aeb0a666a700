"""Issue 14 item 1: a token never leaves its realm through a URL the browser rewrites.

The realm is ``/app/`` on the realm server; ``/app-evil/`` on the same origin is outside it.
Each consumer gets URLs that *spell* a path under ``/app/`` but that the browser's URL parser
resolves to ``/app-evil/...`` (dot segments, ``%2e`` dots, ``\\``, tab), and one plain
in-realm URL that must still authenticate (so the test can fail both ways).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page
from support import Servers, open_app

# Each replaces the "/" after "app": the raw URL starts with the realm's spelling
# ".../app/", the browser sends ".../app-evil/...".
ESCAPES = [
    "/../",
    "/%2e%2e/",
    "/%2E%2E/",
    "/.%2e/",
    "/..\\",
    "/%2e.\\",  # mixed
    "/sub/.%2E\\%2e%2e/",  # mixed, two levels
    "/.\t./",  # the parser drops ASCII tab and newline anywhere
]

FETCH = "(u) => pyauthWeb.fetch(u).then((r) => r.status)"
WRAP_FETCH = "(u) => pyauthWeb.wrapFetch((i, init) => fetch(i, init))(u).then((r) => r.status)"
PY_FETCH = """(u) => pyauthWeb.pyodide.runPythonAsync(`
import pyauth_web
(await pyauth_web.fetch(${JSON.stringify(u)})).status
`)"""
STREAM = """(u) => new Promise((resolve) => {
  const h = pyauthWeb.stream(u, {
    onStateChange: (s) => { if (s !== 'connecting') setTimeout(() => { h.close(); resolve(s); }); },
  });
})"""
IMG = """(u) => new Promise((resolve) => {
  const img = new Image();
  img.onload = () => resolve(true);
  img.onerror = () => resolve(false);
  img.src = u;
})"""
SOCKET = """async ([u, tokenIn]) => {
  window.__lastSocket = await pyauthWeb.socket(u, {tokenIn});
  // Buffered until the socket is open (after the auth message, if any): the server logs the
  // connect with the token it got, or with this as its first message.
  window.__lastSocket.send('probe');
}"""


@pytest.fixture
def app_page(page: Page, servers: Servers) -> Page:
    return open_app(page, servers)


def realm_app(servers: Servers) -> str:
    return servers.realm + "app/"


def entries(servers: Servers, tag: str) -> list[dict[str, Any]]:
    return [e for e in servers.realm_log.entries if tag in e["path"]]


def wait_logged(servers: Servers, pred: Callable[[dict[str, Any]], bool], n: int) -> None:
    """Bounded wait until the realm server logged ``n`` entries matching ``pred``."""
    deadline = time.monotonic() + 10
    while len([e for e in servers.realm_log.entries if pred(e)]) < n:
        assert time.monotonic() < deadline, "the realm server did not log the requests"
        time.sleep(0.02)


def escaped(servers: Servers, rest: str, *, ws: bool = False) -> list[str]:
    """One raw URL per escape, each resolving to ``/app-evil/<rest with its index>``."""
    base = servers.realm.replace("http://", "ws://") if ws else servers.realm
    return [f"{base}app{esc}app-evil/{rest.format(i=i)}" for i, esc in enumerate(ESCAPES)]


def check_outside(servers: Servers, tag: str, token: str, expected: list[str]) -> None:
    """Every logged request outside /app/ arrived without the token, and the browser really
    sent one to each ``expected`` path under /app-evil/."""
    outside = [e for e in entries(servers, tag) if not e["path"].startswith("/app/")]
    leaked = [
        e["path"]
        for e in outside
        if e["auth"] is not None
        or token in str(e.get("query") or "")
        or token in str(e.get("body") or "")
    ]
    assert leaked == [], f"{len(leaked)} of {len(outside)} requests outside /app/ carried the token"
    assert sorted({e["path"] for e in outside}) == sorted(expected)


def set_app_token(page: Page, servers: Servers) -> str:
    token = servers.token(realm=realm_app(servers))
    page.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [realm_app(servers), token])
    return token


@pytest.mark.parametrize("consumer", ["fetch", "wrapFetch", "python-fetch", "stream", "img"])
def test_http_consumers_send_no_token_outside_the_realm(
    app_page: Page, servers: Servers, run_id: str, consumer: str, page_errors: list[str]
) -> None:
    token = set_app_token(app_page, servers)
    script = {
        "fetch": FETCH,
        "wrapFetch": WRAP_FETCH,
        "python-fetch": PY_FETCH,
        "stream": STREAM,
        "img": IMG,
    }[consumer]
    tag = f"{consumer}-{run_id}"
    rest = f"img/{tag}" if consumer == "img" else tag  # /SCOPE/img/NAME is an image route
    # In the realm: authenticated (an image there really loads).
    result = app_page.evaluate(script, f"{realm_app(servers)}{rest}-in")
    if consumer == "img":
        assert result is True
    inside = [e for e in entries(servers, tag) if e["path"] == f"/app/{rest}-in"]
    assert inside and inside[0]["auth"] == f"Bearer {token}"
    for url in escaped(servers, rest + "-{i}"):
        app_page.evaluate(script, url)
    check_outside(servers, tag, token, [f"/app-evil/{rest}-{i}" for i in range(len(ESCAPES))])
    assert app_page.evaluate("() => window.__unhandled") == []
    assert page_errors == []


@pytest.mark.parametrize("token_in", ["message", "url"])
def test_websocket_sends_no_token_outside_the_realm(
    app_page: Page, servers: Servers, run_id: str, token_in: str
) -> None:
    token = set_app_token(app_page, servers)
    tag = f"ws{token_in}-{run_id}"
    ws_realm = realm_app(servers).replace("http://", "ws://")

    def is_connect(e: dict[str, Any]) -> bool:
        return e["method"] == "WS" and tag in e["path"] and not e["path"].endswith("/message")

    urls = [f"{ws_realm}{tag}-in/ws", *escaped(servers, f"{tag}-{{i}}/ws", ws=True)]
    for n, url in enumerate(urls, start=1):
        app_page.evaluate(SOCKET, [url, token_in])
        wait_logged(servers, is_connect, n)  # the server has seen its token or first message
        app_page.evaluate("() => window.__lastSocket.close()")
    connects = [e for e in servers.realm_log.entries if is_connect(e)]
    inside = [e for e in connects if e["path"].startswith("/app/")]
    assert [(e["path"], e["auth"]) for e in inside] == [(f"/app/{tag}-in/ws", f"Bearer {token}")]
    outside = [e for e in connects if not e["path"].startswith("/app/")]
    leaked = [e["path"] for e in outside if e["auth"] is not None]
    assert leaked == [], f"{len(leaked)} of {len(outside)} sockets outside /app/ got the token"
    # The first message each of those server sockets received is ours, not an auth message.
    assert [e["body"] for e in outside] == ["probe"] * len(ESCAPES)
    # No request outside /app/ (the HTTP upgrade included) carried the token at all.
    check_outside(servers, tag, token, [f"/app-evil/{tag}-{i}/ws" for i in range(len(ESCAPES))])


def test_get_token_answers_for_the_canonical_url(app_page: Page, servers: Servers) -> None:
    token = set_app_token(app_page, servers)
    get = "(u) => pyauthWeb.getToken(u)"
    assert app_page.evaluate(get, realm_app(servers) + "x") == token
    # A spelling the browser normalises into the realm is in the realm.
    assert app_page.evaluate(get, servers.realm + "app/sub/../x") == token
    assert app_page.evaluate(get, servers.realm.replace("http:", "HTTP:") + "app/x") == token
    for url in escaped(servers, "x-{i}") + escaped(servers, "x-{i}", ws=True):
        assert app_page.evaluate(get, url) is None, url
    for bad in ["http://[bad/app/", "javascript:alert(1)//app/", "data:,app/", ""]:
        assert app_page.evaluate(get, bad) is None, bad
