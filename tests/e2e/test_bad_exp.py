"""Issue 14 item 3: one stored token with a bad ``exp`` is dropped; start-up, the good realm,
``state()`` and logout keep working, and the refresh timer does not spin."""

from __future__ import annotations

import json
import time

import pytest
from jwt import api_jws
from playwright.sync_api import Page
from support import LOAD_IMAGE, STORAGE_KEY, Servers, wait_controlled, wait_ready

from pyauth_web.tokens import MAX_EXP

# The loader's timers (asyncio.call_later in Pyodide) go through setTimeout: count them.
COUNT_TIMERS = """
window.__timeouts = 0;
const __setTimeout = window.setTimeout;
window.setTimeout = function (...args) { window.__timeouts += 1; return __setTimeout.apply(this, args); };
"""
IMG = LOAD_IMAGE

BAD_EXP = {
    "400-digit-int": "9" * 400,
    "NaN": "NaN",
    "Infinity": "Infinity",
    "-Infinity": "-Infinity",
    "1e309": "1e309",
    "negative": "-1",
    "string": '"123"',
    "past-MAX_EXP": str(MAX_EXP + 1),
}


def raw_jwt(servers: Servers, realm: str, exp_json: str) -> str:
    """A JWT whose payload JSON holds ``exp`` exactly as written (PyJWT's claims encoder
    would refuse NaN or write 1e309 as Infinity)."""
    payload = '{"sub": "demo-user", "realm": ' + json.dumps(realm) + ', "exp": ' + exp_json + "}"
    return api_jws.encode(payload.encode(), servers.issuer.secret, algorithm="HS256")


@pytest.mark.parametrize("kind", BAD_EXP)
def test_bad_exp_in_storage_is_dropped_and_logout_still_works(
    page: Page, servers: Servers, run_id: str, kind: str, page_errors: list[str]
) -> None:
    good_realm, bad_realm = servers.realm + "app/", servers.realm + f"bad-{kind}/"
    page.add_init_script(COUNT_TIMERS)
    page.goto(f"{servers.host}/t/refresh.html?refresh=/refresh")
    wait_ready(page)
    wait_controlled(page)
    good = servers.token(realm=good_realm)
    page.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [good_realm, good])
    assert page.evaluate(IMG, f"{good_realm}img/before-{run_id}") is True
    # The stored session gets one entry with a bad exp (another tab, an old version, a bug),
    # stored first (so it is read first, and scheduled first).
    page.evaluate(
        """([key, realm, token]) => {
          const session = {[realm]: token, ...JSON.parse(localStorage.getItem(key))};
          localStorage.setItem(key, JSON.stringify(session));
        }""",
        [STORAGE_KEY, bad_realm, raw_jwt(servers, bad_realm, BAD_EXP[kind])],
    )
    since = time.time()
    page.reload()
    wait_ready(page)  # start-up does not fail
    # The refresh timer does not spin: ~1 s measured window of timer activity.
    before = page.evaluate("() => window.__timeouts")
    page.wait_for_timeout(1_000)
    timers = page.evaluate("() => window.__timeouts") - before
    assert timers < 50, f"{timers} timers in 1 s"
    assert servers.issuer.refreshes(since) == []  # the good token is fresh; the bad one is gone
    state = page.evaluate("() => pyauthWeb.state()")  # JSON.parse of the runtime's state
    assert [t["realmURL"] for t in state["tokens"]] == [good_realm]
    # One warning names the dropped entry.
    warnings = page.evaluate(
        "() => window.__events.filter((e) => e.kind === 'warning').map((e) => e.message)"
    )
    assert [w for w in warnings if bad_realm in w and "exp" in w], warnings
    # The good realm still works, with its token.
    assert page.evaluate(IMG, f"{good_realm}img/after-{run_id}") is True
    assert servers.realm_auth(f"/app/img/after-{run_id}") == [f"Bearer {good}"]
    # Logout works, and afterwards the realm's images carry no token.
    page.evaluate("() => pyauthWeb.clearTokens()")
    assert page.evaluate("(k) => localStorage.getItem(k)", STORAGE_KEY) is None
    assert page.evaluate(IMG, f"{good_realm}img/out-{run_id}") is False
    assert servers.realm_auth(f"/app/img/out-{run_id}") == [None]
    assert page.evaluate("() => window.__unhandled") == []
    assert page_errors == []


def test_set_token_rejects_a_bad_exp_with_one_line(page: Page, servers: Servers) -> None:
    page.goto(f"{servers.host}/t/refresh.html?refresh=/refresh")
    wait_ready(page)
    realm = servers.realm + "app/"
    for kind, exp_json in BAD_EXP.items():
        message = page.evaluate(
            "([r, t]) => pyauthWeb.setToken(r, t).then(() => null, (e) => e.message)",
            [realm, raw_jwt(servers, realm, exp_json)],
        )
        assert message and "'exp'" in message and "\n" not in message, (kind, message)
    assert page.evaluate("() => pyauthWeb.state()")["tokens"] == []


def test_state_is_valid_json_whatever_was_configured(page: Page, servers: Servers) -> None:
    page.goto(f"{servers.host}/t/refresh.html?refresh=/refresh")
    wait_ready(page)
    page.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [servers.realm, servers.token()])
    # Whether configure accepts an infinite skew or refuses it, state() must still parse.
    state = page.evaluate(
        "() => pyauthWeb.configure({skew: Infinity}).catch(() => null).then(() => pyauthWeb.state())"
    )
    assert [t["realmURL"] for t in state["tokens"]] == [servers.realm]
