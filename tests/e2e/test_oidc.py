"""Issue 3: tabs refresh through a real OpenID Provider (node `oidc-provider`) with rotation.

The provider runs from tests/oidc/ (``npm ci`` there; `make test` does it) on 127.0.0.1 with
a public client, PKCE, the refresh_token grant, 20 s JWT access tokens, and refresh-token
rotation, which revokes the whole grant when a used refresh token is presented again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from oidc_op import ACCESS_TTL, CLIENT_ID, HeldReplies, Provider, running_provider, sign_in
from playwright.sync_api import BrowserContext
from support import STORAGE_KEY, Servers, open_app, wait_ready, wait_until

from pyauth_web.protocol import lock_name
from pyauth_web.refresh import Reason


@pytest.fixture(scope="module")
def provider(servers: Servers) -> Iterator[Provider]:
    with running_provider(f"{servers.host}/t/callback.html", servers.realm) as op:
        yield op


def test_tabs_refresh_through_a_real_provider_without_invalid_grant(
    context: BrowserContext, new_page: Any, provider: Provider, servers: Servers
) -> None:
    # The provider's own development login page links web fonts: keep them off the network.
    tokens = sign_in(new_page(external="block"), provider, servers)
    assert tokens["refresh_token"] and tokens["access_token"].count(".") == 2  # a JWT
    setup = (
        "([endpoint, clientId]) => pyauthWeb.configure("
        "{oauth: {tokenEndpoint: endpoint, clientId}, skew: 8, jitter: 4})"
    )
    tabs = [new_page() for _ in range(4)]
    for tab in tabs:
        tab.goto(servers.host + "/t/app.html")
    for tab in tabs:
        wait_ready(tab)
        tab.evaluate(setup, [f"{provider.issuer}/token", CLIENT_ID])
    since = time.time()
    tabs[0].evaluate("([r, t, rt]) => pyauthWeb.setToken(r, t, rt)",
                     [servers.realm, tokens["access_token"], tokens["refresh_token"]])
    # Several expiries: access tokens live 20 s and are refreshed 8-12 s before exp.
    provider.wait_for("grant.success", 3, since, timeout=60)
    refreshes = provider.grants("grant.success", since)
    assert len(refreshes) >= 3, provider.events
    assert all(r["grant_type"] == "refresh_token" for r in refreshes)
    assert provider.grants("grant.error", since) == []
    assert provider.grants("grant.revoked", since) == []
    elapsed = time.time() - since
    # One refresh per expiry, not one per tab: at most one per (ttl - skew - jitter) seconds,
    # less a second for exp's whole-second rounding.
    assert len(refreshes) <= elapsed / (ACCESS_TTL - 8 - 4 - 1) + 1
    current = tabs[0].evaluate("(u) => pyauthWeb.getToken(u)", servers.realm)
    for tab in tabs:  # every tab holds the newest token (storage events are asynchronous)
        tab.wait_for_function("async ([u, t]) => (await pyauthWeb.getToken(u)) === t",
                              arg=[servers.realm, current], timeout=5_000)
        assert tab.evaluate("() => window.__authErrors") == []
    print(f"oidc: {len(refreshes)} refresh grants in {elapsed:.1f} s across {len(tabs)} tabs")


REFRESH_TIMEOUT, LOCK_TIMEOUT = 10.0, 12.0  # one attempt: nothing may take longer than their sum
RELEASED_S = 4.0  # below REFRESH_TIMEOUT: B settles by A's released lock, not by a deadline
NEVER_HANG_MS = int((REFRESH_TIMEOUT + LOCK_TIMEOUT + 2) * 1000)  # the documented bound, + slack
START_GET = """(u) => { window.__got = null; pyauthWeb.getToken(u).then(
  (t) => { window.__got = {ok: true, value: t, at: performance.now()}; },
  (e) => { window.__got = {ok: false, value: String(e && e.message), at: performance.now()}; });
}"""
GOT = "() => window.__got"
QUEUED = """(n) => navigator.locks.query().then(  // held (by A) and asked for (by B)
  (s) => s.held.some((l) => l.name === n) && s.pending.some((l) => l.name === n))"""
WATCH_LOCK = """(n) => navigator.locks.query().then((s) => {  // when A's document lets it go
  const holder = s.held.find((l) => l.name === n).clientId;
  window.__freed = null;
  const poll = setInterval(async () => {
    const now = await navigator.locks.query();
    if (!now.held.some((l) => l.clientId === holder)) {
      window.__freed = performance.now(); clearInterval(poll); }
  }, 20);
})"""


def refresh_grants(provider: Provider, kind: str, since: float) -> list[dict[str, Any]]:
    return [e for e in provider.grants(kind, since) if e.get("grant_type") == "refresh_token"]


@pytest.mark.parametrize("end", ["close", "reload"])
def test_a_tab_closed_or_reloaded_while_its_refresh_is_at_the_provider(
    context: BrowserContext, new_page: Any, provider: Provider, servers: Servers,
    page_errors: list[str], end: str
) -> None:
    """Issue 10 item 5, with the real provider's rotation: tab A's refresh request reaches the
    provider (which rotates the refresh token) and A is closed or reloaded before the answer
    arrives, while tab B already waits for A's lock. The new refresh token is lost with A's
    document. Chromium (156) ends the old document's request and releases its Web Lock at once,
    for a reload as for a close, so B goes ahead well before any deadline. Defined outcome: B
    presents the old refresh token, the provider sees it reused, refuses (``invalid_grant``) and
    revokes the grant, and B ends the episode with exactly one ``console:auth-error``; the
    reloaded tab, spending that token once more, ends with one too — bounded, no retry loop;
    the user signs in again and refreshing works."""
    tokens = sign_in(new_page(external="block"), provider, servers)
    front = HeldReplies(servers, provider, hold_next=1)  # A's refresh: answered, never delivered
    options = {
        "oauth": {"tokenEndpoint": front.endpoint, "clientId": CLIENT_ID},
        "skew": 30, "jitter": 0,  # stale at once
        "refreshTimeout": REFRESH_TIMEOUT, "lockTimeout": LOCK_TIMEOUT, "retry": {"attempts": 1},
    }
    lock = lock_name(STORAGE_KEY, servers.realm)
    try:
        a, b = open_app(new_page(), servers), open_app(new_page(), servers)
        since = time.time()
        a.evaluate("(o) => pyauthWeb.configure(o)", options)
        a.evaluate("([r, t, rt]) => pyauthWeb.setToken(r, t, rt)",
                   [servers.realm, tokens["access_token"], tokens["refresh_token"]])
        wait_until(lambda: bool(front.held), 15, "tab A's proactive refresh at the provider")
        assert front.held == [200]  # the provider rotated the refresh token; A never hears
        assert provider.wait_for("grant.success", 1, since)
        b.evaluate("(o) => pyauthWeb.configure(o)", options)
        b.evaluate(START_GET, servers.realm)  # B must refresh too: it queues on A's lock
        b.wait_for_function(QUEUED, arg=lock, timeout=5_000)
        assert front.held == [200] and front.ended == []  # nothing else reached the provider
        b.evaluate(WATCH_LOCK, lock)
        mark, t0 = b.evaluate("() => performance.now()"), time.monotonic()
        if end == "close":
            a.close()  # the rotated refresh token is lost with the tab
        else:
            a.reload()  # ... with the old document
        got = b.wait_for_function(GOT, timeout=NEVER_HANG_MS).json_value()
        settled = (got["at"] - mark) / 1000
        b.wait_for_function("() => window.__freed !== null", timeout=1_000)
        freed = (b.evaluate("() => window.__freed") - mark) / 1000
        # Never a hang; and in fact the lock came free with A's document, not by a deadline.
        assert freed <= settled < RELEASED_S < REFRESH_TIMEOUT + LOCK_TIMEOUT, (freed, settled)
        wait_until(lambda: bool(front.ended), RELEASED_S, "Chromium to end A's held request")
        request_ended = front.ended[0] - t0
        assert not got["ok"] and "invalid_grant" in got["value"], got
        errors = b.evaluate("() => window.__authErrors")
        assert len(errors) == 1 and errors[0]["reason"] == "invalid_grant", errors
        assert provider.wait_for("grant.revoked", 1, since)  # reuse detected: the grant is gone
        result = b.evaluate("""(u) => pyauthWeb.getToken(u).then(
            (t) => 'token', (e) => String(e.message))""", servers.realm)
        assert "invalid_grant" in result  # the episode stays failed: no new request, no loop
        documents = [b]
        if end == "reload":  # the reloaded tab starts, configures, finds the revoked grant
            wait_ready(a)
            a.evaluate("(o) => pyauthWeb.configure(o)", options)
            a.evaluate(START_GET, servers.realm)
            again = a.wait_for_function(GOT, timeout=NEVER_HANG_MS).json_value()
            # B's refusal dropped the refused refresh token from storage: A has none to present
            assert not again["ok"] and Reason.NO_REFRESH_TOKEN in again["value"], again
            documents.append(a)
        b.wait_for_timeout(1000)  # a quiet second: a retry loop would show here
        for tab, reason in zip(documents, ["invalid_grant", Reason.NO_REFRESH_TOKEN], strict=False):
            errors = tab.evaluate("() => window.__authErrors")  # one console:auth-error per tab
            assert len(errors) == 1 and errors[0]["reason"] == reason, errors
        # One rotation (A's, lost), one revocation, one refusal: the refused refresh token is
        # dropped from storage, so no other tab presents it again.
        assert len(refresh_grants(provider, "grant.success", since)) == 1, provider.events
        assert len(provider.grants("grant.revoked", since)) == 1, provider.events
        refusals = refresh_grants(provider, "grant.error", since)
        assert len(refusals) == 1, provider.events
        assert front.held == [200]

        # The host drops the dead session and the user signs in again: the new session
        # refreshes normally, in every tab. (Logout first: configure() starts a new coordinator,
        # which would take up the dead session again and report it once more.)
        b.evaluate("() => pyauthWeb.clearTokens()")
        for tab in documents:  # now refresh 5 s after a 20 s token's issue
            tab.wait_for_function("async () => (await pyauthWeb.state()).tokens.length === 0")
            tab.evaluate("(o) => pyauthWeb.configure(o)", {"skew": ACCESS_TTL - 5})
        context.clear_cookies()  # the provider's login session: log in afresh, as at first
        fresh = sign_in(new_page(external="block"), provider, servers)
        signed_in = time.time()
        b.evaluate("([r, t, rt]) => pyauthWeb.setToken(r, t, rt)",
                   [servers.realm, fresh["access_token"], fresh["refresh_token"]])
        assert provider.wait_for("grant.success", 1, signed_in, timeout=15)
        assert refresh_grants(provider, "grant.success", signed_in), provider.events
        for tab in documents:
            tab.wait_for_function("async ([u, t]) => { const n = await pyauthWeb.getToken(u); "
                                  "return n.split('.').length === 3 && n !== t; }",
                                  arg=[servers.realm, fresh["access_token"]], timeout=5_000)
            assert len(tab.evaluate("() => window.__authErrors")) == 1
        assert provider.grants("grant.error", signed_in) == []
        assert provider.grants("grant.revoked", signed_in) == []
        assert page_errors == []
        print(f"oidc {end} mid-refresh: A's request ended {request_ended:.2f} s and its lock "
              f"{freed:.2f} s after the {end}, B settled in {settled:.2f} s; "
              f"refusals {len(refusals)}, one error per tab")
    finally:
        front.release()
