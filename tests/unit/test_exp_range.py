"""Issue 14 item 3: only a finite ``exp`` in [0, MAX_EXP] is accepted.

PyJWT will not encode NaN or ``1e309`` literally, so the payloads here are raw JSON text,
signed with PyJWT's JWS layer (the signature is not what is being tested).
"""

from __future__ import annotations

import json
import math

import pytest
from jwt import api_jws

from pyauth_web.tokens import MAX_EXP, InvalidToken, TokenStore, token_expiry

NOW = 1_800_000_000.0
GOOD_REALM = "https://a.example/"
BAD_REALM = "https://a.example/bad/"


def raw_jwt(exp_json: str) -> str:
    """A JWT whose payload is exactly ``{"sub": "u", "exp": <exp_json>}``."""
    payload = '{"sub": "u", "exp": ' + exp_json + "}"
    return api_jws.encode(payload.encode(), "k" * 32, algorithm="HS256")


REJECTED = {
    "400-digit int": "9" * 400,
    "NaN": "NaN",
    "Infinity": "Infinity",
    "-Infinity": "-Infinity",
    "1e309 literal": "1e309",
    "string": '"123"',
    "negative": "-1",
    "MAX_EXP+1": str(MAX_EXP + 1),
    "true": "true",
    "-0.5": "-0.5",
}
ACCEPTED = {
    "1.5 float": ("1.5", 1.5),
    "0": ("0", 0.0),
    "MAX_EXP": (str(MAX_EXP), float(MAX_EXP)),
    "MAX_EXP as float": (f"{MAX_EXP}.0", float(MAX_EXP)),
}


def test_max_exp_is_the_last_second_of_9999() -> None:
    from datetime import UTC, datetime

    assert datetime.fromtimestamp(MAX_EXP, UTC).isoformat() == "9999-12-31T23:59:59+00:00"


@pytest.mark.parametrize("exp_json", REJECTED.values(), ids=REJECTED.keys())
def test_token_expiry_rejects_out_of_range_exp_with_one_line(exp_json: str) -> None:
    with pytest.raises(InvalidToken) as info:
        token_expiry(raw_jwt(exp_json))
    message = str(info.value)
    assert "'exp'" in message and "\n" not in message and len(message) < 120


@pytest.mark.parametrize("exp_json,expected", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_token_expiry_accepts_finite_in_range_exp(exp_json: str, expected: float) -> None:
    assert token_expiry(raw_jwt(exp_json)) == expected


@pytest.mark.parametrize("exp_json", REJECTED.values(), ids=REJECTED.keys())
def test_set_rejects_and_loads_drops_only_the_bad_entry(exp_json: str) -> None:
    good = raw_jwt(str(int(NOW + 3600)))
    bad = raw_jwt(exp_json)
    store = TokenStore(clock=lambda: NOW)
    with pytest.raises(InvalidToken):
        store.set(BAD_REALM, bad)
    problems = store.loads(json.dumps({GOOD_REALM: good, BAD_REALM: bad}))
    assert list(store.entries()) == [GOOD_REALM]
    assert store.lookup(GOOD_REALM + "x") is not None
    assert len(problems) == 1 and BAD_REALM in problems[0] and "'exp'" in problems[0]
    # Whatever is stored, the serialized form is valid JSON (no NaN/Infinity).
    json.loads(store.dumps(), parse_constant=pytest.fail)


@pytest.mark.parametrize("exp_json,expected", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_loads_keeps_in_range_exp(exp_json: str, expected: float) -> None:
    store = TokenStore(clock=lambda: NOW)
    assert store.loads(json.dumps({GOOD_REALM: raw_jwt(exp_json)})) == []
    exp = store.entries()[GOOD_REALM].exp
    assert exp == expected and exp is not None and math.isfinite(exp)


def test_any_exception_reading_one_entry_drops_that_entry_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pyauth_web.tokens as tokens

    real = tokens.token_expiry

    def flaky(token: str) -> float | None:
        if token == "boom":
            raise OverflowError("int too large to convert to float")
        return real(token)

    monkeypatch.setattr(tokens, "token_expiry", flaky)
    store = TokenStore(clock=lambda: NOW)
    good = raw_jwt(str(int(NOW + 3600)))
    problems = store.loads(json.dumps({GOOD_REALM: good, BAD_REALM: "boom"}))
    assert list(store.entries()) == [GOOD_REALM]
    assert problems == [f"dropped stored entry {BAD_REALM!r}: int too large to convert to float"]


def test_deeply_nested_session_is_reported_not_raised() -> None:
    assert TokenStore().loads("[" * 100_000 + "]" * 100_000)
    assert TokenStore().loads('{"https://a.example/": ' + "[" * 100_000 + "]" * 100_000 + "}")
