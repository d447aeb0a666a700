"""The shared realm table under CPython: pyauth_web.realms against the table, and the table and
the implementation against ada-url (a WHATWG-conformant URL parser) as the reference."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ada_url
import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyauth_web.realms import InvalidRealm, canonical_realm, check_realm
from pyauth_web.tokens import TokenStore

TABLE = json.loads((Path(__file__).parents[1] / "realm_cases.json").read_text())["cases"]
PORT = "8123"


def fill(text: str) -> str:
    return text.replace("{PORT}", PORT).replace("{NAME}", "n")


def ids(case: dict[str, Any]) -> str:
    return str(case["name"])


def whatwg(text: str) -> str | None:
    """ada-url's serialisation, checked as a realm; None when it is not a usable realm."""
    try:
        return check_realm(ada_url.URL(text).href, text)
    except (ValueError, InvalidRealm):
        return None


def test_the_table_covers_what_the_issue_lists() -> None:
    names = " ".join(c["name"] for c in TABLE)
    for needed in ("upper-case", "port", "IPv6", "IDN", "non-ASCII path", "space", "%7E", "%2F",
                   "%2e%2e", "dot segment", "dot-dot", "backslash", "trailing-dot", "lookalike"):
        assert needed in names, needed


@pytest.mark.parametrize("case", TABLE, ids=ids)
def test_the_table_agrees_with_a_whatwg_parser(case: dict[str, Any]) -> None:
    expected = fill(case["canonical"])
    assert whatwg(fill(case["input"])) == (None if expected == "reject" else expected)
    for url in case.get("match", []) + case.get("no_match", []):
        assert ada_url.URL(fill(url)).href == fill(url), url  # request URLs are canonical


@pytest.mark.parametrize("case", TABLE, ids=ids)
def test_cpython_canonical_form(case: dict[str, Any]) -> None:
    expected = fill(case.get("python", case["canonical"]))
    if expected == "reject":
        with pytest.raises(InvalidRealm) as info:
            canonical_realm(fill(case["input"]))
        assert "\n" not in str(info.value) and repr(fill(case["input"]))[:40] in str(info.value)
    else:
        assert canonical_realm(fill(case["input"])) == expected
        assert canonical_realm(expected) == expected  # canonical forms are fixed points


@pytest.mark.parametrize("case", [c for c in TABLE if c["canonical"] != "reject"], ids=ids)
def test_cpython_matching(case: dict[str, Any]) -> None:
    realm = fill(case["canonical"])
    store = TokenStore(clock=lambda: 0.0)
    store.set(realm, jwt.encode({"sub": "u"}, "k" * 32, algorithm="HS256"))
    for url in case.get("match", []):
        assert store.realm_for(fill(url)) == realm, url
    for url in case.get("no_match", []):
        assert store.realm_for(fill(url)) is None, url


REALMISH = st.builds(
    lambda scheme, host, port, path: f"{scheme}://{host}{port}{path}",
    st.sampled_from(["http", "https", "HTTP", "Https", "ftp"]),
    st.one_of(
        st.from_regex(r"[A-Za-z0-9.\-_]{1,12}", fullmatch=True),
        st.sampled_from(["[::1]", "[0:0::1]", "127.0.0.1", "127.1", "0x7f.0.0.1", "1.2.3.4.",
                         "a.example.", "b\u00fccher.example", "a%41.example", "[::ffff:1.2.3.4]"]),
    ),
    st.sampled_from(["", ":80", ":443", ":0080", ":8080", ":", ":99999", ":x"]),
    st.lists(
        st.one_of(
            st.sampled_from([".", "..", "%2e", "%2E%2e", ".%2E", "a b", "\u00e4", "%7E", "%2F",
                             "%zz", "a\\b", "q?x", "f#g", "x^y", "{}", "`", "'", "~", "", "A"]),
            st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=4),
        ),
        max_size=4,
    ).map(lambda segs: "/" + "/".join(segs) + "/"),
)


@settings(max_examples=2000, deadline=None, derandomize=True)
@given(REALMISH)
def test_cpython_never_disagrees_with_a_whatwg_parser(text: str) -> None:
    """For any realm-ish input the CPython rule gives the WHATWG form or refuses: never another
    form (a token stored under a form the browser would not produce would never match)."""
    try:
        mine: str | None = canonical_realm(text)
    except InvalidRealm:
        return
    assert mine == whatwg(text), text
