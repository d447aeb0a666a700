"""Issue 4: stale-tab recovery (pre-warm on return) and authenticated fetch, in real Chromium."""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page
from support import STALE_TTL, Servers, wait_controlled, wait_ready

from pyauth_web.demo.servers import RealmLog, realm_app


class Shifted:
    """A realm server and issuer whose clock the test moves with Playwright's page clock."""

    def __init__(self, servers: Servers) -> None:
        self.offset = 0.0
        self.log = RealmLog()
        self.realm = servers.thread.serve(realm_app(log=self.log, clock=self.now)) + "/"

    def now(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def shifted(servers: Servers) -> Iterator[Shifted]:
    s = Shifted(servers)
    saved = servers.issuer.clock
    servers.issuer.clock = s.now  # refreshed tokens are minted at the page's (shifted) time
    yield s
    servers.issuer.clock = saved


def stale_page(page: Page, servers: Servers, realm: str, run_id: str) -> None:
    query = urllib.parse.urlencode({"realm": realm, "run": run_id})
    page.goto(f"{servers.host}/t/stale.html?{query}")
    wait_ready(page)
    wait_controlled(page)


def prewarms(page: Page) -> int:
    return int(page.evaluate("() => window.__events.filter((e) => e.kind === 'prewarm').length"))


def test_stale_tab_comes_back_and_just_works(
    context: BrowserContext, page: Page, servers: Servers, shifted: Shifted, run_id: str,
    page_errors: list[str],
) -> None:
    context.clock.install()
    stale_page(page, servers, shifted.realm, run_id)
    page.evaluate("([r, t]) => pyauthWeb.setToken(r, t)",
                  [shifted.realm, servers.issuer.mint(shifted.realm, ttl=3600)])
    assert page.evaluate("() => loadImages()") == 20
    page.evaluate("() => setVisibility('hidden')")
    shifted.offset = 2 * 3600
    context.clock.fast_forward("02:00:00")  # two hours in the background
    since = time.time()
    page.evaluate("() => setVisibility('visible')")
    # The pre-warm alone refreshes the stale token, before the host asks for anything.
    page.wait_for_function("() => window.__events.some((e) => e.kind === 'token-refreshed')",
                           timeout=2_000)
    statuses = page.evaluate("() => callApis()")
    elapsed = time.time() - since
    assert statuses == [200] * 5
    assert elapsed < 2.0, elapsed
    assert page.evaluate("() => loadImages()") == 20  # 0 broken images
    assert len(servers.issuer.refreshes(since)) == 1
    assert page.evaluate("() => window.__authErrors") == []
    refreshed = page.evaluate("() => window.__events.filter((e) => e.kind === 'token-refreshed')")
    assert [e["realmURL"] for e in refreshed] == [shifted.realm]
    assert page_errors == []


def test_burst_of_focus_and_visibility_events_is_one_prewarm(
    context: BrowserContext, page: Page, servers: Servers, run_id: str
) -> None:
    context.clock.install()
    stale_page(page, servers, servers.realm, run_id)
    # Before setToken: the stale token's refresh may reach the issuer before evaluate() returns
    # (a fresh-clone run counted 0 when `since` was taken after it).
    since = time.time()
    page.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [servers.realm, servers.token(ttl=STALE_TTL)])
    page.evaluate("""async () => {
      for (let i = 0; i < 10; i++) {
        if (i % 2) window.dispatchEvent(new Event('focus'));
        else document.dispatchEvent(new Event('visibilitychange'));
        await new Promise((r) => setTimeout(r, 10));   // 10 events in 100 ms
      }
    }""")
    page.clock.run_for(2_000)
    page.wait_for_function("() => window.__events.some((e) => e.kind === 'token-refreshed')")
    assert prewarms(page) == 1
    assert len(servers.issuer.refreshes(since)) == 1  # the token was within the skew margin
    # Hidden: no pre-warm at all.
    page.evaluate("() => setVisibility('hidden')")
    page.evaluate("() => { for (let i = 0; i < 5; i++) window.dispatchEvent(new Event('focus')); }")
    page.clock.run_for(2_000)
    assert prewarms(page) == 1
    # Visible again, a fresh token: one more pre-warm, and it refreshes nothing.
    page.evaluate("() => setVisibility('visible')")
    page.clock.run_for(2_000)
    # (the pre-warm is emitted by the runtime's task after the clock ran: wait for it, bounded)
    page.wait_for_function(
        "() => window.__events.filter((e) => e.kind === 'prewarm').length >= 2", timeout=5_000)
    assert prewarms(page) == 2
    assert len(servers.issuer.refreshes(since)) == 1


def test_token_endpoint_down_on_return_gives_one_auth_error(
    context: BrowserContext, new_page: Any, servers: Servers, run_id: str,
    page_errors: list[str],
) -> None:
    context.clock.install()
    page = new_page()
    page.goto(servers.host + "/t/app.html")
    wait_ready(page)
    dead = servers.thread.serve(realm_app())  # a port that will refuse connections
    servers.thread.loop.call_soon_threadsafe(
        lambda: servers.thread.loop.create_task(servers.thread.stop(dead)))
    page.evaluate("(url) => pyauthWeb.configure({refreshURL: url})", dead + "/refresh")
    page.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [servers.realm, servers.token(ttl=3600)])
    page.evaluate("""() => {
      Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => 'hidden'});
      document.dispatchEvent(new Event('visibilitychange'));
    }""")
    context.clock.fast_forward("02:00:00")
    page.evaluate("""() => {
      Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => 'visible'});
      document.dispatchEvent(new Event('visibilitychange'));
    }""")
    page.clock.run_for(10_000)  # debounce + three attempts with backoff
    page.wait_for_function("() => window.__authErrors.length > 0")
    page.clock.run_for(10_000)
    errors = page.evaluate("() => window.__authErrors")
    assert len(errors) == 1 and errors[0]["realmURL"] == servers.realm
    assert page.evaluate("() => window.__unhandled") == []
    assert page_errors == []


def api_calls(servers: Servers, key: str) -> list[dict[str, Any]]:
    return servers.realm_log.for_path(f"/api/reject/{key}")


POST = """async ([url, body]) => {
  const r = await pyauthWeb.fetch(url, {method: 'POST', body, headers: {'Content-Type': 'application/json'}});
  return r.status;
}"""


def test_fetch_retries_a_401_once_replaying_the_body(
    page: Page, servers: Servers, run_id: str
) -> None:
    page.goto(f"{servers.host}/t/refresh.html?refresh=/refresh")
    wait_ready(page)
    first = servers.token()
    page.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [servers.realm, first])
    body = json.dumps({"order": run_id, "items": [1, 2, 3]})
    once, twice = f"once-{run_id}", f"twice-{run_id}"
    assert page.evaluate(POST, [f"{servers.realm}api/reject/{once}?times=1", body]) == 200
    seen = api_calls(servers, once)
    assert [e["body"] for e in seen] == [body, body]
    assert seen[0]["auth"] == f"Bearer {first}" and seen[1]["auth"] != seen[0]["auth"]
    assert page.evaluate(POST, [f"{servers.realm}api/reject/{twice}?times=2", body]) == 401
    assert len(api_calls(servers, twice)) == 2
    # Never a token for a URL outside every realm.
    assert page.evaluate("(u) => pyauthWeb.fetch(u).then((r) => r.status)",
                         f"{servers.other}api/x-{run_id}") == 401
    assert [e["auth"] for e in servers.other_log.for_path(f"/api/x-{run_id}")] == [None]


def test_wrap_fetch_and_python_fetch_behave_the_same(
    page: Page, servers: Servers, run_id: str
) -> None:
    page.goto(f"{servers.host}/t/refresh.html?refresh=/refresh")
    wait_ready(page)
    page.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [servers.realm, servers.token()])
    body = json.dumps({"n": run_id})
    wrapped = page.evaluate(
        """async ([url, body]) => {
          let calls = 0;
          const hostFetch = (input, init) => { calls += 1; return fetch(input, init); };
          const f = pyauthWeb.wrapFetch(hostFetch);
          const r = await f(url, {method: 'POST', body});
          return [r.status, calls];
        }""",
        [f"{servers.realm}api/reject/wrap-{run_id}?times=1", body],
    )
    assert wrapped == [200, 2]
    assert [e["body"] for e in api_calls(servers, f"wrap-{run_id}")] == [body, body]
    # The same from Python running in the page's Pyodide (a <script type="py"> would do this).
    status = page.evaluate(
        """([url, body]) => pyauthWeb.pyodide.runPythonAsync(`
import pyauth_web
response = await pyauth_web.fetch(${JSON.stringify(url)}, method="POST", body=${JSON.stringify(body)})
response.status
`)""",
        [f"{servers.realm}api/reject/py-{run_id}?times=1", body],
    )
    assert status == 200
    assert [e["body"] for e in api_calls(servers, f"py-{run_id}")] == [body, body]
    twice = page.evaluate(
        """(url) => pyauthWeb.pyodide.runPythonAsync(`
import pyauth_web
(await pyauth_web.fetch(${JSON.stringify(url)})).status
`)""",
        f"{servers.realm}api/reject/py2-{run_id}?times=2",
    )
    assert twice == 401 and len(api_calls(servers, f"py2-{run_id}")) == 2
