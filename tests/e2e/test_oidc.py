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
from oidc_op import ACCESS_TTL, CLIENT_ID, Provider, running_provider, sign_in
from playwright.sync_api import BrowserContext
from support import Servers, wait_ready


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


def test_a_tab_closed_while_its_refresh_is_at_the_provider(
    context: BrowserContext, new_page: Any, provider: Provider, servers: Servers
) -> None:
    """Issue 10 item 5, with the real provider's rotation: tab A's refresh request reaches the
    provider (which rotates the refresh token) and A closes before the answer arrives. The new
    refresh token is lost with A. Defined outcome: the next tab to refresh presents the old
    refresh token, the provider sees it reused, refuses (``invalid_grant``) and revokes the
    grant, and that tab ends the episode with exactly one ``console:auth-error`` — bounded, no
    retry loop; the user signs in again."""
    tokens = sign_in(new_page(external="block"), provider, servers)
    setup = ("([endpoint, clientId]) => pyauthWeb.configure("
             "{oauth: {tokenEndpoint: endpoint, clientId}, skew: 30, jitter: 0})")  # stale at once
    a, b = new_page(), new_page()
    for tab in (a, b):
        tab.goto(servers.host + "/t/app.html")
        wait_ready(tab)
    held: list[Any] = []

    def hold(route: Any) -> None:  # forward to the provider, never give A the answer
        held.append(route.fetch())

    a.route(f"{provider.issuer}/token", hold)
    since = time.time()
    a.evaluate(setup, [f"{provider.issuer}/token", CLIENT_ID])
    a.evaluate("([r, t, rt]) => pyauthWeb.setToken(r, t, rt)",
               [servers.realm, tokens["access_token"], tokens["refresh_token"]])
    deadline = time.monotonic() + 15
    while not held and time.monotonic() < deadline:  # A's proactive refresh, at the provider
        a.wait_for_timeout(100)
    assert held and held[0].status == 200  # the provider rotated the refresh token
    assert provider.wait_for("grant.success", 1, since)
    a.close()  # the rotated refresh token is lost with the tab

    t0 = time.monotonic()
    b.evaluate(setup, [f"{provider.issuer}/token", CLIENT_ID])  # B refreshes now (stale)
    b.wait_for_function("() => window.__authErrors.length > 0", timeout=20_000)
    settled = time.monotonic() - t0
    errors = b.evaluate("() => window.__authErrors")
    assert len(errors) == 1 and errors[0]["reason"] == "invalid_grant", errors
    assert provider.wait_for("grant.revoked", 1, since)  # reuse detected: the grant is gone
    result = b.evaluate("""(u) => pyauthWeb.getToken(u).then(
        (t) => 'token', (e) => String(e.message))""", servers.realm)
    assert "invalid_grant" in result  # the episode stays failed: no new request, no loop
    b.wait_for_timeout(1000)
    assert len(b.evaluate("() => window.__authErrors")) == 1
    refusals = provider.grants("grant.error", since)
    assert 1 <= len(refusals) <= 2, provider.events  # one refusal, no retry loop
    print(f"oidc closed mid-refresh: B settled in {settled:.1f} s with one auth error")
