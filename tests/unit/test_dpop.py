"""The sans-I/O DPoP core (RFC 9449) against real libraries: proofs it builds, signed with
``cryptography`` as WebCrypto would, verify with PyJWT; thumbprints agree with joserfc."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import given
from hypothesis import strategies as st
from joserfc.jwk import ECKey

from pyauth_web import dpop


def _key() -> tuple[ec.EllipticCurvePrivateKey, dict[str, str]]:
    private = ec.generate_private_key(ec.SECP256R1())
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
    return private, {**public, "ext": True, "key_ops": ["verify"]}  # as WebCrypto exports it


def _sign(private: ec.EllipticCurvePrivateKey, data: str) -> bytes:
    """What ``crypto.subtle.sign({name: 'ECDSA', hash: 'SHA-256'}, ...)`` returns: r || s."""
    r, s = decode_dss_signature(private.sign(data.encode(), ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def test_a_proof_built_here_and_signed_as_webcrypto_signs_verifies_with_pyjwt() -> None:
    private, jwk = _key()
    token = "access.token.value"
    claims = dpop.claims(
        "get", "https://api.example/img/a.svg?x=1#frag", iat=int(time.time()),
        jti=uuid.uuid4().hex, access_token=token, nonce="n-1",
    )
    signing_input = dpop.signing_input(jwk, claims)
    proof = dpop.compact(signing_input, _sign(private, signing_input))
    header = jwt.get_unverified_header(proof)
    assert header["typ"] == "dpop+jwt" and header["alg"] == "ES256"
    assert set(header["jwk"]) == {"kty", "crv", "x", "y"}  # public members only
    verified = jwt.decode(proof, jwt.PyJWK(header["jwk"]).key, algorithms=["ES256"])
    assert verified["htm"] == "GET"
    assert verified["htu"] == "https://api.example/img/a.svg"  # no query, no fragment
    expected_ath = hashlib.sha256(token.encode()).digest()
    assert jwt.utils.base64url_decode(verified["ath"]) == expected_ath
    assert verified["nonce"] == "n-1"
    assert dpop.parse(proof) == (header, verified)


def test_a_token_request_proof_has_no_ath_and_no_nonce_unless_given() -> None:
    claims = dpop.claims("POST", "https://op.example/token", iat=1, jti="j" * 22)
    assert set(claims) == {"jti", "htm", "htu", "iat"}


def test_the_thumbprint_is_rfc7638_as_joserfc_computes_it() -> None:
    _, jwk = _key()
    assert dpop.thumbprint(jwk) == ECKey.import_key(dpop.public_jwk(jwk)).thumbprint()


def test_bound_jkt_reads_cnf_from_a_jwt_and_nothing_else() -> None:
    jkt = "A" * 43
    bound = jwt.encode({"cnf": {"jkt": jkt}, "exp": 2}, "k" * 32, algorithm="HS256")
    plain = jwt.encode({"exp": 2}, "k" * 32, algorithm="HS256")
    assert dpop.bound_jkt(bound) == jkt
    assert dpop.bound_jkt(plain) is None
    assert dpop.bound_jkt("opaque-token") is None
    weird = jwt.encode({"cnf": {"jkt": ["x"]}}, "k" * 32, algorithm="HS256")
    assert dpop.bound_jkt(weird) is None


@pytest.mark.parametrize(
    ("jwk", "what"),
    [
        ({"kty": "RSA", "n": "x", "e": "AQAB"}, "EC P-256"),
        ({"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"}, "EC P-256"),
        ({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}, "32 bytes"),
        ({"kty": "EC", "crv": "P-256", "x": "A" * 43, "y": "A" * 43, "d": "A" * 43}, "public"),
    ],
)
def test_a_key_that_is_not_a_public_p256_key_is_refused(jwk: dict[str, str], what: str) -> None:
    with pytest.raises(dpop.InvalidProof, match=what):
        dpop.public_jwk(jwk)


def test_claims_refuse_bad_input_with_one_line_errors() -> None:
    with pytest.raises(dpop.InvalidProof, match="htu"):
        dpop.claims("GET", "ftp://x/", iat=1, jti="j" * 22)
    with pytest.raises(dpop.InvalidProof, match="htm"):
        dpop.claims("GET /", "https://x/", iat=1, jti="j" * 22)
    with pytest.raises(dpop.InvalidProof, match="jti"):
        dpop.claims("GET", "https://x/", iat=1, jti="short")
    with pytest.raises(dpop.InvalidProof, match="nonce"):
        dpop.claims("GET", "https://x/", iat=1, jti="j" * 22, nonce='a"b')
    with pytest.raises(dpop.InvalidProof, match="64 bytes"):
        dpop.compact("a.b", b"x" * 70)


@pytest.mark.parametrize(
    ("status", "header", "body", "asks"),
    [
        (401, 'DPoP error="use_dpop_nonce", error_description="nonce"', None, True),
        (401, 'DPoP algs="ES256", error="use_dpop_nonce"', None, True),
        (401, 'Bearer realm="x", DPoP error="use_dpop_nonce"', None, True),
        (401, 'DPoP error="invalid_token"', None, False),
        (401, 'Bearer error="use_dpop_nonce"', None, False),
        (401, None, None, False),
        (400, None, '{"error": "use_dpop_nonce"}', True),
        (400, None, '{"error": "invalid_grant"}', False),
        (400, None, "not json", False),
        (403, 'DPoP error="use_dpop_nonce"', None, False),
    ],
)
def test_which_answers_ask_for_a_nonce(
    status: int, header: str | None, body: str | None, asks: bool
) -> None:
    assert dpop.asks_for_nonce(status, header, body) is asks


def test_nonces_are_kept_per_origin_newest_first_and_bounded() -> None:
    nonces = dpop.Nonces(limit=2)
    assert nonces.update("https://a.example/x?q", "n1")
    assert not nonces.update("https://a.example/y", 'bad"nonce')  # malformed: ignored
    assert nonces.get("https://a.example/other") == "n1"
    nonces.update("https://a.example/", "n2")
    assert nonces.get("https://a.example/") == "n2"
    nonces.update("https://b.example/", "b")
    nonces.update("https://c.example/", "c")
    assert nonces.get("https://a.example/") is None  # the least recently updated went
    assert nonces.get("https://c.example/") == "c"


@given(st.text(max_size=300))
def test_parse_refuses_junk_with_invalid_proof_only(text: str) -> None:
    try:
        dpop.parse(text)
    except dpop.InvalidProof:
        pass


@given(st.dictionaries(st.text(max_size=5), st.one_of(st.text(max_size=50), st.integers()), max_size=6))
def test_public_jwk_never_crashes_on_junk(jwk: dict[str, object]) -> None:
    try:
        dpop.public_jwk(jwk)
    except dpop.InvalidProof:
        pass


def test_htm_is_the_method_as_fetch_sends_it() -> None:
    # fetch upper-cases these six and sends any other method as given: the proof must match.
    assert [dpop.method(m) for m in ("get", "Post", "delete", "patch", "M-SEARCH")] == [
        "GET", "POST", "DELETE", "patch", "M-SEARCH"]
    with pytest.raises(dpop.InvalidProof, match="htm"):
        dpop.method("GE T")


def test_the_worker_reads_a_binding_by_the_same_rule() -> None:
    """sw.js's jwtBound (a bound JWT is never sent as Bearer) and bound_jkt agree: cnf.jkt, a
    43-character base64url thumbprint."""
    source = (Path(__file__).resolve().parents[2] / "sw" / "sw.js").read_text()
    assert "/^[A-Za-z0-9_-]{43}$/.test(jkt)" in source
    assert "claims.cnf.jkt" in source
    jkt = "A" * 43
    bound = jwt.encode({"cnf": {"jkt": jkt}}, "k" * 32, algorithm="HS256")
    assert dpop.bound_jkt(bound) == jkt
    assert dpop.bound_jkt(jwt.encode({"cnf": {"jkt": "A" * 42}}, "k" * 32, algorithm="HS256")) is None
