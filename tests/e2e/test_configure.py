"""Issue 9 item 5: ``configure()`` refuses unknown keys and wrong types with a one-line error
naming the input, in the real page, and the previous configuration stays in force."""

from __future__ import annotations

from playwright.sync_api import Page
from support import SKEW, Servers, wait_ready

CONFIGURE = "(o) => pyauthWeb.configure(o).then(() => null, (e) => e.message)"


def test_configure_refuses_unknown_keys_and_wrong_types(page: Page, servers: Servers) -> None:
    page.goto(f"{servers.host}/t/refresh.html?refresh=/refresh")
    wait_ready(page)
    page.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [servers.realm, servers.token()])
    before = page.evaluate("() => pyauthWeb.state()")
    refused = {
        "refreshUrl": {"refreshUrl": servers.host + "/refresh"},  # silently ignored before
        "skew": {"skew": "30"},
        "retry.attempts": {"retry": {"attempts": 0}},
        "'maxAttempts'": {"retry": {"maxAttempts": 2}},
        "'client_id'": {"oauth": {"tokenEndpoint": servers.host + "/t", "clientId": "a",
                                  "client_id": "a"}},
        "one refresher": {"refreshURL": servers.host + "/refresh", "refresh": "() => 1"},
    }
    for name, options in refused.items():
        message = page.evaluate(CONFIGURE, options)
        assert message and name in message and "\n" not in message, (name, message)
    after = page.evaluate("() => pyauthWeb.state()")
    assert after["skew"] == before["skew"] == SKEW
    assert [t["realmURL"] for t in after["tokens"]] == [servers.realm]
    # null and undefined mean "not given"; a good call still works.
    assert page.evaluate(CONFIGURE, {"skew": 30, "jitter": None}) is None
    assert page.evaluate("() => pyauthWeb.state()")["skew"] == 30
