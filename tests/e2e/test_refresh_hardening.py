"""Refresh hardening (issue 14 item 6, issue 15 items 1, 4, 5), in real Chromium.

- A refresh that never answers cannot block the tabs: every attempt and every wait for the
  cross-tab lock has a deadline (``configure({refreshTimeout, lockTimeout})``).
- A refresh token belongs to the session it came with: logout and ``removeToken`` remove it from
  any tab, a new session never inherits it, and it is never used for another session.
- A credential never follows a redirect.
- ``configure()`` checks the URLs that receive credentials at once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest
from playwright.sync_api import Page
from support import (
    SKEW,
    STALE_TTL,
    STORAGE_KEY,
    Endpoint,
    Servers,
    open_app,
    stored_refresh,
    wait_until,
)

STORED = "(k) => localStorage.getItem(k)"
SET = "([r, t]) => pyauthWeb.setToken(r, t)"
SET_WITH_REFRESH = "([r, t, rt]) => pyauthWeb.setToken(r, t, rt)"
GET = """(u) => pyauthWeb.getToken(u).then(
  (t) => ({ok: true, value: t}), (e) => ({ok: false, value: String(e && e.message)}))"""
IMAGE = "(u) => fetch(u, {cache: 'no-store'}).then((r) => r.status)"
AUTH_ERRORS = "() => window.__authErrors"
NO_SESSION_REFRESH_TOKEN = "no refresh token for this session"

# Short deadlines for the tests (seconds) and the bound they give getToken:
# attempts x (lock wait + attempt) + the backoff ceilings between attempts.
REFRESH_TIMEOUT, LOCK_TIMEOUT, ATTEMPTS, BACKOFF = 1.0, 1.5, 2, 0.2
BOUND_S = ATTEMPTS * (LOCK_TIMEOUT + REFRESH_TIMEOUT) + (ATTEMPTS - 1) * BACKOFF
SLACK_S = 1.5  # the fetch's own round trips, timer granularity, a busy 2-core machine
SHORT_DEADLINES = {
    "refreshTimeout": REFRESH_TIMEOUT,
    "lockTimeout": LOCK_TIMEOUT,
    "retry": {"attempts": ATTEMPTS, "base": BACKOFF, "cap": BACKOFF},
}


@pytest.fixture
def endpoints(servers: Servers) -> Iterator[Callable[..., Endpoint]]:
    made: list[Endpoint] = []

    def make(mode: str = "answer") -> Endpoint:
        made.append(Endpoint(servers, mode))
        return made[-1]

    yield make
    for endpoint in made:  # let hung handlers end
        endpoint.release()


def configure(page: Page, options: dict[str, Any]) -> None:
    page.evaluate("(o) => pyauthWeb.configure(o)", options)


def configure_oauth(page: Page, endpoint: Endpoint, **extra: Any) -> None:
    configure(page, {"oauth": {"tokenEndpoint": endpoint.origin + "/token", "clientId": "spa"},
                     **extra})


def sub(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["sub"])


def subs_seen(servers: Servers, path: str) -> list[str | None]:
    seen: list[str | None] = []
    for entry in servers.realm_log.for_path(path):
        auth = entry["auth"]
        seen.append(sub(auth.partition(" ")[2]) if auth else None)
    return seen


def refresh_realms(page: Page) -> list[str]:
    """The realms holding a refresh token in the session record, as ``page`` reads it."""
    return sorted(stored_refresh(page) or {})


def wait_refresh_realms(page: Page, realms: list[str]) -> None:
    """(The record is consistent across tabs: this holds at once; bounded all the same.)"""
    wait_until(lambda: refresh_realms(page) == realms, 5, f"refresh tokens for {realms}")


START_BOTH = """([u, api]) => {
  window.__settled = [];
  const t0 = performance.now();
  const done = (what, ok) => (v) => window.__settled.push({what, ok, ms: performance.now() - t0,
    value: !ok ? String(v && v.message) : what === 'fetch' ? v.status : v});
  pyauthWeb.getToken(u).then(done('getToken', true), done('getToken', false));
  pyauthWeb.fetch(api, {cache: 'no-store'}).then(done('fetch', true), done('fetch', false));
}"""


def settle_both(tabs: list[Page], realm: str, api: str) -> list[dict[str, dict[str, Any]]]:
    """Start getToken and pyauthWeb.fetch in every tab; wait (bounded) until all settle."""
    for tab in tabs:
        tab.evaluate(START_BOTH, [realm, api])
    results = []
    for tab in tabs:
        tab.wait_for_function("() => window.__settled.length === 2",
                              timeout=(BOUND_S + SLACK_S + 2) * 1000)
        results.append({r["what"]: r for r in tab.evaluate("() => window.__settled")})
    return results


# -- A: deadlines ---------------------------------------------------------------------------------
def test_hung_refresh_url_settles_every_tab_within_the_deadline(
    new_page: Any, servers: Servers, endpoints: Any, run_id: str, page_errors: list[str]
) -> None:
    endpoint = endpoints("hang")
    tabs = [new_page(), new_page()]
    for tab in tabs:
        open_app(tab, servers)
        configure(tab, {"refreshURL": endpoint.origin + "/refresh", **SHORT_DEADLINES})
    stale = servers.token(ttl=STALE_TTL)  # inside the default skew: every caller needs a refresh
    tabs[0].evaluate(SET, [servers.realm, stale])
    tabs[1].wait_for_function("async () => (await pyauthWeb.state()).tokens.length === 1")

    # Phase 1: the refresh URL accepts the connection and never answers.
    results = settle_both(tabs, servers.realm, servers.realm + f"api/hung-{run_id}")
    for result in results:
        assert all(r["ms"] <= (BOUND_S + SLACK_S) * 1000 for r in result.values()), result
        assert not result["getToken"]["ok"] and "timed out" in result["getToken"]["value"]
        assert result["fetch"]["ok"] and result["fetch"]["value"] == 401  # sent unauthenticated
    for tab in tabs:  # quiescent: each tab ended its episode, reported once
        tab.wait_for_function(
            "async () => (await pyauthWeb.state()).tokens.every((t) => t.failed)", timeout=5_000
        )
    errors = [tab.evaluate(AUTH_ERRORS) for tab in tabs]
    assert all(len(e) == 1 for e in errors), errors
    assert {e[0]["reason"] for e in errors} <= {"refresh timed out", "refresh lock timed out"}
    hung = endpoint.posts()
    assert 1 <= len(hung) <= ATTEMPTS * len(tabs)
    # Every hung request was aborted by the page (its connection closed), none left behind.
    wait_until(lambda: len(endpoint.aborted) == len(endpoint.posts()), 5, "aborted requests")

    # Phase 2: the endpoint answers again (after hanging once more): a later attempt works.
    endpoint.mode, endpoint.hang_next = "answer", 1
    stale2 = servers.token(ttl=STALE_TTL)
    tabs[0].evaluate(SET, [servers.realm, stale2])  # a new token ends the failure episodes
    tabs[1].wait_for_function(
        "async () => (await pyauthWeb.state()).tokens.every((t) => !t.failed)", timeout=5_000
    )
    results = settle_both(tabs, servers.realm, servers.realm + f"api/answered-{run_id}")
    tokens = set()
    for result in results:
        assert all(r["ms"] <= (BOUND_S + SLACK_S) * 1000 for r in result.values()), result
        assert result["getToken"]["ok"] and result["fetch"]["value"] == 200, result
        tokens.add(result["getToken"]["value"])
    assert len(tokens) == 1 and stale2 not in tokens
    new = tokens.pop()
    for i, tab in enumerate(tabs):
        path = f"img/after-hang-{i}-{run_id}"
        assert tab.evaluate(IMAGE, servers.realm + path) == 200
        assert [e["auth"] for e in servers.realm_log.for_path("/" + path)] == [f"Bearer {new}"]
    assert all(len(tab.evaluate(AUTH_ERRORS)) == 1 for tab in tabs)  # nothing new
    assert page_errors == []


def test_hung_host_callback_refresh_times_out(page: Page, servers: Servers) -> None:
    open_app(page, servers)
    page.evaluate(
        """(deadlines) => pyauthWeb.configure({
             refresh: () => { window.__calls = (window.__calls || 0) + 1; return new Promise(() => {}); },
             ...deadlines})""",
        SHORT_DEADLINES,
    )
    page.evaluate(SET, [servers.realm, servers.token(ttl=STALE_TTL)])
    started = time.monotonic()
    got = page.evaluate(GET, servers.realm)
    assert time.monotonic() - started <= BOUND_S + SLACK_S
    assert not got["ok"] and "refresh timed out" in got["value"]
    page.wait_for_function("() => window.__authErrors.length === 1")
    assert page.evaluate(AUTH_ERRORS)[0]["reason"] == "refresh timed out"
    assert page.evaluate("() => window.__calls") == ATTEMPTS


def test_hung_token_endpoint_request_is_aborted(
    page: Page, servers: Servers, endpoints: Any
) -> None:
    endpoint = endpoints("hang")
    open_app(page, servers)
    configure_oauth(page, endpoint, **SHORT_DEADLINES)
    page.evaluate(SET_WITH_REFRESH, [servers.realm, servers.token(ttl=STALE_TTL), "rt-hung-0"])
    started = time.monotonic()
    got = page.evaluate(GET, servers.realm)
    assert time.monotonic() - started <= BOUND_S + SLACK_S
    # The second attempt does not resend a refresh token whose request got no answer (the
    # server may have rotated it); the episode ends with the reason it got none.
    assert not got["ok"] and "refresh timed out" in got["value"]
    assert endpoint.refresh_tokens_received() == ["rt-hung-0"]
    wait_until(lambda: endpoint.aborted == [0], 5, "the token request to be aborted")
    page.wait_for_function("() => window.__authErrors.length === 1")
    assert page.evaluate(AUTH_ERRORS)[0]["reason"] == "refresh timed out"


def test_a_lock_held_forever_times_out_and_leaves_no_request_queued(
    new_page: Any, servers: Servers, run_id: str
) -> None:
    holder, tab = new_page(), new_page()
    open_app(holder, servers)
    open_app(tab, servers)
    configure(tab, {"refreshURL": servers.host + "/refresh", **SHORT_DEADLINES})
    lock = f"pyauth-web:{STORAGE_KEY}:{servers.realm}"
    # A frozen or hung tab holding the realm's refresh lock.
    holder.evaluate(
        """(name) => new Promise((granted) => navigator.locks.request(name, () => {
             granted(); return new Promise((release) => { window.__release = release; });
           }))""",
        lock,
    )
    tab.evaluate(SET, [servers.realm, servers.token(ttl=STALE_TTL)])
    started = time.monotonic()
    got = tab.evaluate(GET, servers.realm)
    assert time.monotonic() - started <= ATTEMPTS * LOCK_TIMEOUT + BACKOFF + SLACK_S
    assert not got["ok"] and "refresh lock timed out" in got["value"]
    tab.wait_for_function("() => window.__authErrors.length === 1")
    assert tab.evaluate(AUTH_ERRORS)[0]["reason"] == "refresh lock timed out"
    # The tab gave up waiting: its lock requests left the queue.
    state = tab.evaluate("() => navigator.locks.query()")
    assert [h["name"] for h in state["held"]] == [lock]
    assert [p for p in state["pending"] if p["name"] == lock] == []
    holder.evaluate("() => window.__release()")
    tab.wait_for_function(
        "(n) => navigator.locks.query().then((s) => s.held.every((h) => h.name !== n))", arg=lock
    )
    # Once the lock is free, a new session refreshes normally.
    stale = servers.token(ttl=STALE_TTL)
    tab.evaluate(SET, [servers.realm, stale])
    got = tab.evaluate(GET, servers.realm)
    assert got["ok"] and got["value"] != stale


# -- B: a refresh token belongs to its session ------------------------------------------------
def test_next_user_is_never_refreshed_with_the_previous_users_refresh_token(
    new_page: Any, servers: Servers, endpoints: Any, run_id: str
) -> None:
    endpoint = endpoints()
    endpoint.grants["rt-alice-0"] = "alice"
    signin, account = new_page(), new_page()
    open_app(signin, servers)
    open_app(account, servers)  # an account page: it never configures OAuth
    configure_oauth(signin, endpoint)
    alice = servers.issuer.mint(servers.realm, 30, sub="alice")  # stale at once
    signin.evaluate(SET_WITH_REFRESH, [servers.realm, alice, "rt-alice-0"])
    got = signin.evaluate(GET, servers.realm)
    assert got["ok"] and sub(got["value"]) == "alice"  # rotation works: rt-alice-0 -> rt-alice-1
    assert endpoint.refresh_tokens_received() == ["rt-alice-0"]

    account.evaluate("() => pyauthWeb.clearTokens()")  # logout, from the tab without OAuth
    signin.wait_for_function("async () => (await pyauthWeb.state()).tokens.length === 0")
    seen = len(endpoint.received)
    bob = servers.issuer.mint(servers.realm, 30, sub="bob")  # stale at once
    signin.evaluate(SET, [servers.realm, bob])  # bob signs in without a refresh token
    got = signin.evaluate(GET, servers.realm)
    path = f"img/bob-{run_id}"
    signin.evaluate(IMAGE, servers.realm + path)

    assert endpoint.received[seen:] == []  # alice's refresh token was never sent again
    assert "alice" not in subs_seen(servers, "/" + path)
    assert not got["ok"] and NO_SESSION_REFRESH_TOKEN in got["value"], got
    signin.wait_for_function("() => window.__authErrors.length === 1")
    assert signin.evaluate(AUTH_ERRORS)[0]["reason"] == NO_SESSION_REFRESH_TOKEN
    assert stored_refresh(account) is None  # logout removed it
    wait_refresh_realms(signin, [])


def test_logout_and_remove_from_a_tab_without_oauth_remove_refresh_tokens(
    new_page: Any, servers: Servers, endpoints: Any
) -> None:
    endpoint = endpoints()
    signin, account = new_page(), new_page()
    open_app(signin, servers)
    open_app(account, servers)
    configure_oauth(signin, endpoint)
    for realm, rt in ((servers.realm, "rt-a"), (servers.other, "rt-b")):
        signin.evaluate(SET_WITH_REFRESH, [realm, servers.token(realm=realm), rt])
    both = sorted([servers.realm, servers.other])
    wait_refresh_realms(account, both)  # localStorage reaches other tabs asynchronously
    account.evaluate("(r) => pyauthWeb.removeToken(r)", servers.realm)
    assert refresh_realms(account) == [servers.other]
    wait_refresh_realms(signin, [servers.other])
    # A new session set (in any tab) without a refresh token drops the realm's old one.
    signin.evaluate(SET_WITH_REFRESH, [servers.realm, servers.token(), "rt-a2"])
    wait_refresh_realms(account, both)
    account.evaluate(SET, [servers.other, servers.token(realm=servers.other)])
    assert refresh_realms(account) == [servers.realm]
    account.evaluate("() => pyauthWeb.clearTokens()")
    assert stored_refresh(account) is None
    wait_refresh_realms(signin, [])
    assert endpoint.received == []


def test_a_session_written_straight_to_storage_never_uses_the_old_refresh_token(
    new_page: Any, servers: Servers, endpoints: Any
) -> None:
    endpoint = endpoints()
    endpoint.grants["rt-alice-0"] = "alice"
    signin, host = new_page(), new_page()
    open_app(signin, servers)
    open_app(host, servers)
    configure_oauth(signin, endpoint)
    alice = servers.issuer.mint(servers.realm, 300, sub="alice")
    signin.evaluate(SET_WITH_REFRESH, [servers.realm, alice, "rt-alice-0"])
    bob = servers.issuer.mint(servers.realm, 30, sub="bob")  # stale at once
    # The host writes bob's session straight into localStorage (no setToken, no logout).
    host.evaluate("([k, v]) => localStorage.setItem(k, v)",
                  [STORAGE_KEY, json.dumps({servers.realm: bob})])
    signin.wait_for_function(
        "async () => (await pyauthWeb.state()).tokens.some((t) => !t.fresh)"
    )
    got = signin.evaluate(GET, servers.realm)
    assert endpoint.received == []
    assert not got["ok"] and NO_SESSION_REFRESH_TOKEN in got["value"], got
    signin.wait_for_function("() => window.__authErrors.length === 1")
    assert signin.evaluate(AUTH_ERRORS)[0]["reason"] == NO_SESSION_REFRESH_TOKEN


# -- C: no redirects ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["oauth", "refreshURL"])
def test_a_credential_never_follows_a_redirect(
    page: Page, servers: Servers, endpoints: Any, kind: str, page_errors: list[str]
) -> None:
    endpoint, thief = endpoints("redirect"), endpoints()
    endpoint.redirect_to = thief.origin + "/steal"
    open_app(page, servers)
    if kind == "oauth":
        configure_oauth(page, endpoint)
        page.evaluate(SET_WITH_REFRESH, [servers.realm, servers.token(ttl=STALE_TTL), "rt-secret-0"])
        reason = "token endpoint redirected"
    else:
        configure(page, {"refreshURL": endpoint.origin + "/refresh"})
        page.evaluate(SET, [servers.realm, servers.token(ttl=STALE_TTL)])
        reason = "refresh URL redirected"
    got = page.evaluate(GET, servers.realm)
    assert not got["ok"] and reason in got["value"], got
    page.wait_for_function("() => window.__authErrors.length === 1")
    assert page.evaluate(AUTH_ERRORS)[0]["reason"] == reason
    assert thief.received == []  # no request at all, so no body with the refresh token
    assert len(endpoint.posts()) == 1  # final: not retried
    assert page_errors == []


# -- D: configure() checks its inputs at once ------------------------------------------------------
CONFIGURE = "(o) => pyauthWeb.configure(o).then(() => null, (e) => e.message)"


def test_configure_rejects_bad_credential_urls_and_deadlines_at_once(
    page: Page, servers: Servers
) -> None:
    open_app(page, servers)
    bad: list[tuple[str, str, dict[str, Any]]] = []
    for url in ("http://idp.example/token", "/token", "token", "javascript:alert(1)",
                "https://user:pw@idp.example/token", "https://idp.example/token#f",
                "http://127.evil.example/token", "data:text/plain,x"):
        bad.append(("tokenEndpoint", url, {"oauth": {"tokenEndpoint": url, "clientId": "c"}}))
        bad.append(("refreshURL", url, {"refreshURL": url}))
    endpoint = "https://idp.example/token"
    bad += [
        ("clientId", "''", {"oauth": {"tokenEndpoint": endpoint, "clientId": ""}}),
        ("clientId", "42", {"oauth": {"tokenEndpoint": endpoint, "clientId": 42}}),
        ("tokenEndpoint", "None", {"oauth": {"clientId": "c"}}),
    ]
    for name in ("refreshTimeout", "lockTimeout"):
        for value in (0, -1, "5", True):
            bad.append((name, repr(value), {name: value}))
    bad.append(("lockTimeout", "5", {"refreshTimeout": 10, "lockTimeout": 5}))
    bad += [
        ("refresh", "'x'", {"refresh": "x"}),
        ("retry", "0", {"retry": {"attempts": 0}}),
        ("retry.attempts", "'3'", {"retry": {"attempts": "3"}}),
        ("retry.attempts", "1.5", {"retry": {"attempts": 1.5}}),
        ("retry", "-1", {"retry": {"base": -1}}),
        ("retry", "5", {"retry": 5}),
    ]
    for name, shown, options in bad:
        message = page.evaluate(CONFIGURE, options)
        assert message and name in message and "\n" not in message, (options, message)
        assert shown in message or name == "lockTimeout", (options, message)
        assert "Traceback" not in message
    for value in ("Infinity", "NaN"):
        message = page.evaluate(f"() => pyauthWeb.configure({{refreshTimeout: {value}}})"
                                ".then(() => null, (e) => e.message)")
        assert message and "refreshTimeout" in message
    good = [
        {"oauth": {"tokenEndpoint": "http://127.0.0.1:9/token", "clientId": "c"}},
        {"oauth": {"tokenEndpoint": "http://localhost:9/token", "clientId": "c", "scope": "a"}},
        {"oauth": {"tokenEndpoint": "http://[::1]:9/token", "clientId": "c"}},
        {"oauth": {"tokenEndpoint": endpoint, "clientId": "c"}},
        {"refreshURL": "http://127.0.0.2:9/refresh"},
        {"refreshURL": servers.host + "/refresh", "refreshTimeout": 2, "lockTimeout": 3},
    ]
    for options in good:
        assert page.evaluate(CONFIGURE, options) is None, options
    # A rejected configure() changes nothing: the refresher set before still runs.
    page.evaluate(
        """() => pyauthWeb.configure({refresh: async (realm) => {
             window.__calls = (window.__calls || 0) + 1;
             const resp = await fetch('/token', {method: 'POST', body: JSON.stringify({realm})});
             return (await resp.json()).token;
           }})"""
    )
    assert page.evaluate(CONFIGURE, {"refreshURL": "javascript:x", "skew": 5}) is not None
    stale = servers.token(ttl=STALE_TTL)
    page.evaluate(SET, [servers.realm, stale])
    got = page.evaluate(GET, servers.realm)
    assert got["ok"] and got["value"] != stale and page.evaluate("() => window.__calls") == 1
    assert page.evaluate("() => pyauthWeb.state()")["skew"] == SKEW
