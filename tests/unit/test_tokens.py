from __future__ import annotations

import json

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyauth_web.tokens import (
    InvalidRealm,
    InvalidToken,
    TokenStore,
    normalize_realm,
    normalize_url,
    token_expiry,
)

NOW = 1_800_000_000.0


def make(exp: float | None = None, **claims: object) -> str:
    if exp is not None:
        claims["exp"] = int(exp)
    return jwt.encode({"sub": "u", **claims}, "k" * 32, algorithm="HS256")


def store(now: float = NOW, skew: float = 60) -> TokenStore:
    return TokenStore(clock=lambda: now, skew=skew)


def test_skew_boundary_with_default_60s() -> None:
    exp = NOW + 60
    s = TokenStore(clock=lambda: exp - 61)
    s.set("https://a.example/", make(exp))
    assert s.lookup("https://a.example/x") is not None
    s.clock = lambda: exp - 59
    assert s.lookup("https://a.example/x") is None
    s.clock = lambda: exp - 60  # exactly at the margin: expired
    assert s.lookup("https://a.example/x") is None


def test_token_without_exp_is_valid_until_a_server_says_otherwise() -> None:
    s = store()
    s.set("https://a.example/", make())
    assert s.lookup("https://a.example/") is not None
    assert token_expiry(make()) is None


@pytest.mark.parametrize("bad", ["", "abc", "a.b.c", "x" * 10])
def test_non_jwt_is_rejected(bad: str) -> None:
    with pytest.raises(InvalidToken):
        token_expiry(bad)


def test_non_numeric_exp_is_rejected() -> None:
    tok = jwt.encode({"exp": "soon"}, "k" * 32, algorithm="HS256")
    with pytest.raises(InvalidToken):
        token_expiry(tok)


def test_longest_prefix_wins_and_origins_do_not_leak() -> None:
    s = store()
    s.set("https://a.example/", outer := make(NOW + 3600))
    s.set("https://a.example/api/", inner := make(NOW + 3600))
    assert s.lookup("https://a.example/api/v1")
    assert s.lookup("https://a.example/api/v1").token == inner  # type: ignore[union-attr]
    assert s.lookup("https://a.example/apix").token == outer  # type: ignore[union-attr]
    for foreign in (
        "https://a.example.evil/",
        "https://a.example:8443/",
        "http://a.example/",
        "https://a.example@evil.example/",
        "https://evil.example/https://a.example/",
    ):
        assert s.lookup(foreign) is None, foreign


def test_url_normalization() -> None:
    assert normalize_url("HTTPS://A.Example:443/x") == "https://a.example/x"
    assert normalize_url("http://a.example:80") == "http://a.example/"
    assert normalize_realm("https://A.example/api/") == "https://a.example/api/"
    for bad in (
        "https://a.example/api",
        "ftp://a/",
        "/relative/",
        "https://a/?q=1",
        "https://u:p@a/",
    ):
        with pytest.raises(InvalidRealm):
            normalize_realm(bad)


def test_storage_round_trip_and_hardening() -> None:
    s = store()
    good = make(NOW + 3600)
    s.set("https://a.example/", good)
    raw = s.dumps()
    t = store()
    assert t.loads(raw) == []
    assert t.entries() == s.entries()

    mixed = json.dumps(
        {
            "https://a.example/": good,
            "not a url": good,
            "https://b.example/": "junk",
            "https://c.example/": 42,
        }
    )
    problems = t.loads(mixed)
    assert set(t.entries()) == {"https://a.example/"}
    assert len(problems) == 3
    for corrupt in ("{", "[1,2]", '"str"', "null"):
        assert t.loads(corrupt)  # reported
        assert t.entries() == {}
    assert t.loads(None) == [] and t.loads("") == []


@given(st.text())
def test_loads_never_raises(raw: str) -> None:
    store().loads(raw)


def test_remove_and_clear() -> None:
    s = store()
    s.set("https://a.example/", make())
    assert s.remove("https://a.example/") is True
    assert s.remove("https://a.example/") is False
    s.set("https://a.example/", make())
    s.clear()
    assert s.entries() == {}


@pytest.mark.parametrize(
    "url",
    [
        "https://a.example/app/../app-evil/x",
        "https://a.example/app/%2e%2e/app-evil/x",
        "https://a.example/app/%2E%2E/app-evil/x",
        "https://a.example/app/.%2e/app-evil/x",
        "https://a.example/app/%2E./app-evil/x",
        "https://a.example/app/..\\app-evil/x",
        "https://a.example/app\\..\\app-evil/x",
        "https://a.example/app/.\t./app-evil/x",
        "https://a.example/app/.\n./app-evil/x",
        "https://a.example/app/./x",
        "https://a.example/app/%2e/x",
        "https://a.example/app/..",
    ],
)
def test_a_url_the_browser_would_still_rewrite_is_in_no_realm(url: str) -> None:
    # The browser adapter canonicalises first; the core refuses what was not canonicalised.
    s = store()
    s.set("https://a.example/app/", make(NOW + 3600))
    assert s.realm_for(url) is None and s.lookup(url) is None


@pytest.mark.parametrize(
    "url",
    [
        "https://a.example/app/x",
        "https://a.example/app/...",  # three dots is a name, not a dot segment
        "https://a.example/app/.x/%2ex/x.%2e",
        "https://a.example/app/x?next=/../y&p=a\\b",  # the query is not a path
        "https://a.example/app/x#../../y",
    ],
)
def test_canonical_urls_still_match(url: str) -> None:
    s = store()
    s.set("https://a.example/app/", make(NOW + 3600))
    assert s.realm_for(url) == "https://a.example/app/"


def test_an_entry_knows_the_dpop_key_its_token_is_bound_to() -> None:
    store = TokenStore(clock=lambda: 0.0)
    bound = jwt.encode({"exp": 10**9, "cnf": {"jkt": "B" * 43}}, "k" * 32, algorithm="HS256")
    plain = jwt.encode({"exp": 10**9}, "k" * 32, algorithm="HS256")
    assert store.set("https://a.example/", bound).jkt == "B" * 43
    assert store.set("https://b.example/", plain).jkt is None
