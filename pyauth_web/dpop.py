"""DPoP (RFC 9449): sender-constrained tokens. Sans-I/O.

Everything about a proof except the signature: the header and claims it carries (§4.2), the
JWS signing input, the compact form once the browser has signed it (``crypto.subtle.sign`` with
ECDSA P-256/SHA-256 gives the 64-byte ``r || s`` JWS wants), the public key's thumbprint
(RFC 7638, the ``cnf.jkt`` of a bound token), ``ath``, and the nonce rules (§8, §9): which
answer asks for a nonce, and the newest nonce per origin.

The service worker (``sw/sw.js``) builds the same proof for image requests; a contract test
(``tests/unit/test_protocol.py``) checks the names and rules both sides share, and the e2e tests
(``tests/e2e/test_sender_constrained.py``) have a strict server verify the proofs of both.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import jwt

TYP = "dpop+jwt"
ALG = "ES256"
SCHEME = "DPoP"  # Authorization: DPoP <token>
PROOF_HEADER = "DPoP"  # the request header carrying the proof
NONCE_HEADER = "DPoP-Nonce"  # the response header carrying a server's nonce
USE_NONCE = "use_dpop_nonce"
SIGNATURE_BYTES = 64  # ES256: r || s, 32 bytes each
MAX_NONCE_LENGTH = 1024
MAX_ORIGINS = 256  # the nonce cache keeps this many origins (least recently updated dropped)
KEY_DB = "pyauth-web-dpop"  # IndexedDB database of the apps' keys (the loader and the worker)
KEY_STORE = "keys"  # its object store: app (storage key) -> {privateKey, jwk, created}
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
NONCE_CHARS = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")  # NQCHAR (RFC 9449 §8.1)
DPOP_CHALLENGE = re.compile(r"(?:^|,)\s*DPoP(?:\s|$)", re.I)
USE_NONCE_ERROR = re.compile(r'\berror\s*=\s*"?use_dpop_nonce"?(?:\s|,|$)')


class InvalidProof(ValueError):
    """A proof, key or claim that breaks RFC 9449's rules."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    if not isinstance(text, str) or not _B64URL.fullmatch(text):
        raise InvalidProof(f"not base64url: {text[:40]!r}" if isinstance(text, str) else "not text")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:  # binascii.Error: a length no encoding has
        raise InvalidProof(f"not base64url: {text[:40]!r}") from None


def _json_b64(value: Mapping[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":"), allow_nan=False).encode())


# -- keys ---------------------------------------------------------------------------------------
def public_jwk(jwk: Mapping[str, Any]) -> dict[str, str]:
    """The public P-256 key a proof carries (``kty``, ``crv``, ``x``, ``y`` only: the
    browser's exported JWK also has ``ext`` and ``key_ops``). Raises :class:`InvalidProof` for
    anything else, and for a JWK with a private part (``d``)."""
    if not isinstance(jwk, Mapping) or "d" in jwk:
        raise InvalidProof("the proof key must be a public JWK")
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        got = f"{jwk.get('kty')!r}/{jwk.get('crv')!r}"
        raise InvalidProof(f"the proof key must be EC P-256, got {got}")
    out = {"kty": "EC", "crv": "P-256"}
    for name in ("x", "y"):
        value = jwk.get(name)
        if not isinstance(value, str) or len(b64url_decode(value)) != 32:
            raise InvalidProof(f"the proof key's {name!r} must be 32 bytes, base64url")
        out[name] = value
    return out


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint of an EC public key (the ``jkt`` a bound token names)."""
    key = public_jwk(jwk)
    members = {name: key[name] for name in ("crv", "kty", "x", "y")}  # required, sorted
    return b64url(hashlib.sha256(json.dumps(members, separators=(",", ":")).encode()).digest())


def ath(access_token: str) -> str:
    """The ``ath`` claim: base64url SHA-256 of the access token (ASCII)."""
    return b64url(hashlib.sha256(access_token.encode()).digest())  # UTF-8, as TextEncoder


def bound_jkt(token: str) -> str | None:
    """The ``cnf.jkt`` of a JWT access token (read, not verified, like ``exp``): the thumbprint
    of the key it is bound to; ``None`` for a Bearer JWT, or a token that is not a JWT."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except Exception:  # noqa: BLE001 - an opaque token is not bound as far as we can tell
        return None
    cnf = claims.get("cnf") if isinstance(claims, dict) else None
    jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
    return jkt if isinstance(jkt, str) and _B64URL.fullmatch(jkt) and len(jkt) == 43 else None


# -- proofs -------------------------------------------------------------------------------------
def htu(url: str) -> str:
    """The ``htu`` claim: the request URL without query and fragment (§4.2)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidProof(f"htu must be an absolute http(s) URL, got {url[:80]!r}")
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


_TOKEN_CHARS = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # an HTTP method (RFC 9110 token)
_NORMALISED_METHODS = {"DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT"}


def method(value: str) -> str:
    """The method as the browser sends it (``htm`` must be exactly that): ``fetch`` upper-cases
    these six whatever their case, and sends any other method as given (``patch`` stays)."""
    if not isinstance(value, str) or not _TOKEN_CHARS.fullmatch(value):
        raise InvalidProof(f"htm must be an HTTP method, got {value!r}")
    return value.upper() if value.upper() in _NORMALISED_METHODS else value


def claims(
    htm: str,
    url: str,
    *,
    iat: int,
    jti: str,
    access_token: str | None = None,
    nonce: str | None = None,
) -> dict[str, Any]:
    """The claims of one proof: ``ath`` for a resource request (with ``access_token``), not
    for a token request; ``nonce`` when the server gave one."""
    if not isinstance(jti, str) or not 16 <= len(jti) <= 128:
        raise InvalidProof("jti must be a unique string of 16 to 128 characters")
    out: dict[str, Any] = {"jti": jti, "htm": method(htm), "htu": htu(url), "iat": int(iat)}
    if access_token is not None:
        out["ath"] = ath(access_token)
    if nonce is not None:
        out["nonce"] = check_nonce(nonce)
    return out


def signing_input(jwk: Mapping[str, Any], proof_claims: Mapping[str, Any]) -> str:
    """``BASE64URL(header) . BASE64URL(claims)``: what the key signs."""
    header = {"typ": TYP, "alg": ALG, "jwk": public_jwk(jwk)}
    return f"{_json_b64(header)}.{_json_b64(proof_claims)}"


def compact(signing_input_: str, signature: bytes) -> str:
    """The proof: the signing input and the raw ES256 signature (``r || s``)."""
    if len(signature) != SIGNATURE_BYTES:
        raise InvalidProof(f"an ES256 signature is {SIGNATURE_BYTES} bytes, got {len(signature)}")
    return f"{signing_input_}.{b64url(signature)}"


def parse(proof: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A proof's header and claims, checked against §4.2 except the signature (which a server
    checks with the key in the header). Raises :class:`InvalidProof`."""
    if not isinstance(proof, str) or proof.count(".") != 2 or len(proof) > 8192:
        raise InvalidProof("a proof is a compact JWS of three parts")
    head, body, sig = proof.split(".")
    try:
        header = json.loads(b64url_decode(head))
        payload = json.loads(b64url_decode(body))
    except ValueError as exc:
        raise InvalidProof(f"a proof's header and claims are base64url JSON: {exc}") from None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise InvalidProof("a proof's header and claims are JSON objects")
    if header.get("typ") != TYP or header.get("alg") != ALG:
        raise InvalidProof(f"a proof's header must say typ {TYP!r} and alg {ALG!r}")
    if public_jwk(header.get("jwk") or {}) != header["jwk"]:
        raise InvalidProof("a proof's jwk must hold the public key only")
    if len(b64url_decode(sig)) != SIGNATURE_BYTES:
        raise InvalidProof("a proof's signature must be 64 bytes")
    for name, kind in (("jti", str), ("htm", str), ("htu", str), ("iat", int)):
        if not isinstance(payload.get(name), kind) or isinstance(payload.get(name), bool):
            raise InvalidProof(f"a proof must carry {name!r}")
    return header, payload


# -- nonces -------------------------------------------------------------------------------------
def check_nonce(value: object) -> str:
    if not isinstance(value, str) or len(value) > MAX_NONCE_LENGTH:
        raise InvalidProof("a DPoP nonce is 1 to 1024 visible ASCII characters without quotes")
    if not NONCE_CHARS.fullmatch(value):
        raise InvalidProof("a DPoP nonce is 1 to 1024 visible ASCII characters without quotes")
    return value


def asks_for_nonce(status: int, www_authenticate: str | None, body: str | None = None) -> bool:
    """A server's ``use_dpop_nonce`` answer: a resource server's 401 with
    ``WWW-Authenticate: DPoP error="use_dpop_nonce"`` (§9), or a token endpoint's 400 with
    ``{"error": "use_dpop_nonce"}`` (§8)."""
    if status == 401:
        h = www_authenticate or ""
        return bool(DPOP_CHALLENGE.search(h) and USE_NONCE_ERROR.search(h))
    if status == 400 and body:
        try:
            data = json.loads(body)
        except ValueError:
            return False
        return isinstance(data, dict) and data.get("error") == USE_NONCE
    return False


class Nonces:
    """The newest nonce per origin, from any response's ``DPoP-Nonce``; bounded."""

    def __init__(self, limit: int = MAX_ORIGINS) -> None:
        self._limit = limit
        self._by_origin: OrderedDict[str, str] = OrderedDict()

    @staticmethod
    def origin(url: str) -> str:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}"

    def get(self, url: str) -> str | None:
        return self._by_origin.get(self.origin(url))

    def update(self, url: str, value: object) -> bool:
        """Keep ``value`` (a response's ``DPoP-Nonce``) for ``url``'s origin; a malformed one
        is ignored. Returns whether it was kept."""
        try:
            nonce = check_nonce(value)
        except InvalidProof:
            return False
        origin = self.origin(url)
        self._by_origin[origin] = nonce
        self._by_origin.move_to_end(origin)
        while len(self._by_origin) > self._limit:
            self._by_origin.popitem(last=False)
        return True

    def clear(self) -> None:
        self._by_origin.clear()
