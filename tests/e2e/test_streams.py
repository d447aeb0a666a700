"""Issue 5: SSE over fetch and WebSocket rotation, against real servers on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page
from support import Servers, wait_ready, wait_until

OPEN_STREAM = """([url, stopAt]) => new Promise((resolve) => {
  window.__sse = []; window.__states = []; window.__resyncs = 0;
  window.__stream = pyauthWeb.stream(url, {
    resync: async () => { window.__resyncs += 1; },
    onEvent: (e) => { window.__sse.push(e.id); if (e.id === stopAt) resolve(); },
    onStateChange: (s) => { window.__states.push(s); if (['expired', 'fatal'].includes(s)) resolve(); },
  });
})"""


@pytest.fixture
def app_page(page: Page, servers: Servers) -> Page:
    page.goto(f"{servers.host}/t/refresh.html?refresh=/refresh")
    wait_ready(page)
    return page


@pytest.fixture
def short_tokens(servers: Servers) -> Iterator[None]:
    saved, servers.issuer.ttl = servers.issuer.ttl, 3.0
    yield
    servers.issuer.ttl = saved


def connects(servers: Servers, path: str) -> list[dict[str, object]]:
    return [e for e in servers.realm_log.entries if e["path"] == path]


def test_sse_reconnects_with_the_new_token_and_loses_no_event(
    app_page: Page, servers: Servers, short_tokens: None, run_id: str
) -> None:
    app_page.evaluate("() => pyauthWeb.configure({refreshURL: location.origin + '/refresh', skew: 1, jitter: 0.5})")
    app_page.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [servers.realm, servers.token(ttl=3)])
    since = time.time()
    app_page.evaluate(OPEN_STREAM, [f"{servers.realm}sse/ticker?count=25&interval=0.2&run={run_id}",
                                    "25"])
    app_page.evaluate("() => window.__stream.close()")
    assert app_page.evaluate("() => window.__sse") == [str(k) for k in range(1, 26)]
    seen = [e for e in connects(servers, "/sse/ticker") if e["t"] >= since]
    assert len(seen) >= 2  # the token expired mid-stream at least once
    assert all(e["valid"] for e in seen)
    assert len({e["auth"] for e in seen}) == len(seen)  # a fresh token on every connect
    assert seen[0]["last_event_id"] is None and all(e["last_event_id"] for e in seen[1:])
    assert app_page.evaluate("() => window.__resyncs") == len(seen) - 1  # before each re-subscribe


def test_sse_server_that_closes_at_once_gets_backoff_not_a_storm(
    app_page: Page, servers: Servers
) -> None:
    app_page.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [servers.realm, servers.token()])
    since = time.time()
    app_page.evaluate("(url) => { window.__stream = pyauthWeb.stream(url, {}); }",
                      f"{servers.realm}sse/flap")
    app_page.wait_for_timeout(10_000)  # the measured window: 10 s of reconnect attempts
    app_page.evaluate("() => window.__stream.close()")
    times = [e["t"] for e in connects(servers, "/sse/flap") if e["t"] >= since]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    # Delays are min(1000·2^n, 15000) ms with equal jitter: [0.5,1], [1,2], [2,4], [4,8] s...
    assert 4 <= len(times) <= 5, gaps
    for n, gap in enumerate(gaps):
        assert 0.5 * 2**n * 0.9 <= gap <= 2**n + 0.5, gaps


def test_sse_401_twice_ends_expired(app_page: Page, servers: Servers) -> None:
    app_page.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [servers.realm, servers.token()])
    since = time.time()
    app_page.evaluate(OPEN_STREAM, [f"{servers.realm}sse/deny", None])
    assert app_page.evaluate("() => window.__states").count("expired") == 1
    assert len([e for e in connects(servers, "/sse/deny") if e["t"] >= since]) == 2
    assert len(servers.issuer.refreshes(since)) == 1  # one forced refresh in between


def test_sse_error_event_is_fatal_and_final(app_page: Page, servers: Servers) -> None:
    app_page.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [servers.realm, servers.token()])
    since = time.time()
    app_page.evaluate(OPEN_STREAM, [f"{servers.realm}sse/fatal", None])
    assert app_page.evaluate("() => window.__states")[-1] == "fatal"
    app_page.wait_for_timeout(1_500)  # longer than the first reconnect delay could be
    assert len([e for e in connects(servers, "/sse/fatal") if e["t"] >= since]) == 1


def test_sse_from_python(app_page: Page, servers: Servers) -> None:
    app_page.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [servers.realm, servers.token()])
    ids = app_page.evaluate(
        """(url) => pyauthWeb.pyodide.runPythonAsync(`
from pyauth_web.browser.sse import EventStream
ids = []
async with EventStream(${JSON.stringify(url)}) as stream:
    async for event in stream:
        ids.append(event.id)
        if len(ids) == 5:
            break
ids
`).then((ids) => ids.toJs())""",
        f"{servers.realm}sse/ticker?count=5&interval=0.05",
    )
    assert ids == ["1", "2", "3", "4", "5"]


OPEN_SOCKET = """async (url) => {
  window.__ws = []; window.__wsStates = [];
  window.__socket = await pyauthWeb.socket(url, {
    onMessage: (m) => window.__ws.push(JSON.parse(m)),
    onStateChange: (s) => {
      window.__wsStates.push(s);
      // A message sent while the token is being swapped must arrive exactly once.
      if (s === 'rotating') window.__socket.send(`during-swap-${window.__wsStates.length}`);
    },
  });
}"""


def ws_entries(servers: Servers, path: str, since: float) -> list[dict[str, object]]:
    return [e for e in servers.realm_log.entries
            if e["method"] == "WS" and e["path"] == path and e["t"] >= since]


def test_websocket_rotates_on_token_expired_and_caps_rotations(
    app_page: Page, servers: Servers, page_errors: list[str]
) -> None:
    app_page.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [servers.realm, servers.token()])
    since = time.time()
    ws_url = servers.realm.replace("http://", "ws://") + "ws"
    app_page.evaluate(OPEN_SOCKET, ws_url)
    app_page.wait_for_function("() => window.__wsStates.includes('open')")
    app_page.evaluate("() => window.__socket.send('hello')")
    app_page.wait_for_function("() => window.__ws.some((m) => m.echo === 'hello')")
    for n in range(1, 4):  # three rotations within 60 s are allowed
        app_page.evaluate("() => window.__socket.send(JSON.stringify({cmd: 'expire'}))")
        app_page.wait_for_function(
            "(n) => window.__wsStates.filter((s) => s === 'rotating').length === n "
            "&& window.__wsStates[window.__wsStates.length - 1] === 'open'", arg=n)
    # (the server logs a connect as it answers the handshake: a moment after the page may see it)
    wait_until(lambda: len(ws_entries(servers, "/ws", since)) >= 4, 5, "the fourth connect logged")
    connects = ws_entries(servers, "/ws", since)
    assert len(connects) == 4 and all(e["valid"] for e in connects)
    assert len({e["auth"] for e in connects}) == 4  # a freshly refreshed token each time
    assert len(servers.issuer.refreshes(since)) == 3

    def swaps() -> list[str]:
        bodies = [e["body"] for e in ws_entries(servers, "/ws/message", since)]
        return [str(b) for b in bodies if str(b).startswith("during-swap")]

    # The buffered message goes out on the new socket as it opens: the server logs it a moment
    # after the page reports 'open'.
    wait_until(lambda: len(swaps()) >= 3, 5, "the third buffered message at the server")
    assert len(swaps()) == 3 and len(set(swaps())) == 3  # each buffered message arrived once
    # The 4th rotation within 60 s ends the socket: terminal 'closed', one auth error.
    app_page.evaluate("() => window.__socket.send(JSON.stringify({cmd: 'expire'}))")
    app_page.wait_for_function("() => window.__wsStates[window.__wsStates.length - 1] === 'closed'")
    errors = app_page.evaluate("() => window.__authErrors")
    assert len(errors) == 1 and errors[0]["reason"] == "rotation limit"
    assert len(ws_entries(servers, "/ws", since)) == 4
    message = app_page.evaluate(
        "() => { try { window.__socket.send('late'); return null; } catch (e) { return e.message; } }")
    assert message and "closed" in message
    assert page_errors == []


def test_websocket_token_in_the_url(app_page: Page, servers: Servers) -> None:
    token = servers.token()
    app_page.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [servers.realm, token])
    since = time.time()
    ws_url = servers.realm.replace("http://", "ws://") + "ws"
    app_page.evaluate(
        """async (url) => {
          window.__ws = [];
          window.__socket = await pyauthWeb.socket(url, {tokenIn: 'url',
            onMessage: (m) => window.__ws.push(JSON.parse(m))});
          window.__socket.send('via-url');   // buffered until the socket is open
        }""",
        ws_url,
    )
    app_page.wait_for_function("() => window.__ws.some((m) => m.echo === 'via-url')")
    (connect,) = ws_entries(servers, "/ws", since)
    assert connect["valid"] and connect["auth"] == f"Bearer {token}"
    app_page.evaluate("() => window.__socket.close()")
