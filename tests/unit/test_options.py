"""configure() options: checked in one place, unknown keys and wrong types refused."""

from __future__ import annotations

import math

import pytest

from pyauth_web.options import OPTIONS, Options, parse_options
from pyauth_web.refresh import BackoffPolicy


def parse(**opts: object) -> Options:
    return parse_options(opts, refresh_timeout=10.0, lock_timeout=15.0)


def refuses(opts: dict[str, object], *words: str) -> str:
    with pytest.raises(ValueError) as info:
        parse_options(opts, refresh_timeout=10.0, lock_timeout=15.0)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message
    return message


def test_every_documented_option_is_accepted() -> None:
    o = parse(
        refreshURL="https://idp.example/refresh",
        skew=30,
        jitter=0.5,
        retry={"attempts": 2, "base": 0.1, "cap": 1},
        refreshTimeout=5,
        lockTimeout=8,
        redirects={"https://a.example/app/": "follow"},
    )
    assert o.refresh_url == "https://idp.example/refresh"
    assert (o.skew, o.jitter, o.refresh_timeout, o.lock_timeout) == (30.0, 0.5, 5.0, 8.0)
    assert o.backoff == BackoffPolicy(attempts=2, base=0.1, cap=1.0)
    assert o.redirects == {"https://a.example/app/": "follow"}
    assert set(OPTIONS) >= {"refresh", "refreshURL", "oauth", "skew", "jitter", "retry"}


def test_not_given_means_unchanged() -> None:
    o = parse(skew=None, retry=None)  # JS undefined/null
    assert (o.skew, o.jitter, o.backoff, o.redirects, o.refresh_url) == (None,) * 5
    assert (o.refresh_timeout, o.lock_timeout) == (10.0, 15.0)  # the values in force


@pytest.mark.parametrize("key", ["refreshUrl", "refresh_url", "Skew", "retries", "__proto__"])
def test_unknown_keys_are_refused_by_name(key: str) -> None:
    refuses({key: 1}, repr(key), "unknown option")


def test_misspelt_refresh_url_is_refused_not_ignored() -> None:
    """The issue's example: ``refreshUrl`` for ``refreshURL`` used to be silently ignored."""
    refuses({"refreshUrl": "https://idp.example/refresh"}, "'refreshUrl'", "refreshURL")


def test_nested_unknown_keys_are_refused() -> None:
    refuses({"retry": {"attempts": 2, "max": 3}}, "retry", "'max'")
    oauth = {"tokenEndpoint": "https://idp.example/token", "clientId": "spa", "client_id": "x"}
    refuses({"oauth": oauth}, "oauth", "'client_id'")


@pytest.mark.parametrize(
    ("opts", "name"),
    [
        ({"skew": "60"}, "skew"),
        ({"skew": True}, "skew"),
        ({"skew": -1}, "skew"),
        ({"skew": math.inf}, "skew"),
        ({"skew": math.nan}, "skew"),
        ({"jitter": [1]}, "jitter"),
        ({"jitter": math.inf}, "jitter"),
        ({"retry": 3}, "retry"),
        ({"retry": {"attempts": 0}}, "retry.attempts"),
        ({"retry": {"attempts": 1.5}}, "retry.attempts"),
        ({"retry": {"base": "1"}}, "retry.base"),
        ({"retry": {"cap": math.inf}}, "retry.cap"),
        ({"refresh": "https://idp.example/refresh"}, "refresh"),
        ({"refreshURL": 42}, "refreshURL"),
        ({"refreshURL": "http://idp.example/refresh"}, "refreshURL"),
        ({"oauth": "spa"}, "oauth"),
        ({"oauth": {"tokenEndpoint": "https://idp.example/t", "clientId": ""}}, "oauth.clientId"),
        ({"oauth": {"tokenEndpoint": "https://idp.example/t", "clientId": "a", "scope": 1}}, "scope"),
        ({"refreshTimeout": 0}, "refreshTimeout"),
        ({"lockTimeout": "15"}, "lockTimeout"),
        ({"lockTimeout": 5}, "lockTimeout"),  # not above refreshTimeout (10)
        ({"redirects": {"https://a.example/": "maybe"}}, "redirects"),
        ({"redirects": {"ftp://a.example/": "follow"}}, "redirects"),
    ],
)
def test_wrong_types_and_ranges_name_the_option(opts: dict[str, object], name: str) -> None:
    refuses(opts, name)


def test_one_refresher_at_a_time() -> None:
    refuses(
        {"refresh": lambda realm: realm, "refreshURL": "https://idp.example/refresh"},
        "one refresher",
        "refresh and refreshURL",
    )


def test_not_an_object() -> None:
    refuses([], "configure() takes an object")  # type: ignore[arg-type]


def test_dpop_names_canonical_realms_and_refuses_junk() -> None:
    from pyauth_web.options import parse_options as parse

    opts = parse({"dpop": ["HTTPS://API.example/x/"]}, refresh_timeout=10, lock_timeout=15)
    assert opts.dpop == frozenset({"https://api.example/x/"})
    with pytest.raises(ValueError, match="dpop must be a list"):
        parse({"dpop": "https://api.example/"}, refresh_timeout=10, lock_timeout=15)
    with pytest.raises(ValueError, match="dpop: "):
        parse({"dpop": ["ftp://x/"]}, refresh_timeout=10, lock_timeout=15)
