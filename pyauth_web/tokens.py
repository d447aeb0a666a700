"""Token store logic: realms, longest-prefix matching, JWT expiry with a skew margin.

Sans-I/O: no browser imports, time comes from an injected clock. The browser adapter
(:mod:`pyauth_web.browser`) reads and writes the serialized form to ``localStorage``.

Security model: the page cannot verify a JWT signature (it has no key, and anything it
could check an attacker in the page could forge). Signatures are verified by the realm
server. Client-side we only *read* ``exp`` so we know when to stop using a token.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import jwt

from .dpop import bound_jkt
from .realms import Canonicaliser, canonical_realm, realm_of
from .realms import InvalidRealm as InvalidRealm  # re-exported: raised by TokenStore

Clock = Callable[[], float]

DEFAULT_SKEW_SECONDS = 60.0
DEFAULT_STORAGE_KEY = "pyauth-web:session"
MAX_EXP = 253402300799
"""The largest ``exp`` accepted: 9999-12-31T23:59:59Z (the service worker mirrors it)."""
_DEFAULT_PORTS = {"http": 80, "https": 443}


class InvalidToken(ValueError):
    """A token that is not a readable JWT (or has an unreadable ``exp``)."""


def normalize_url(url: str) -> str:
    """Canonical form of an absolute http(s) URL: lower-case scheme and host, no default port.

    Raises ``ValueError`` for anything that is not an absolute http(s) URL.
    """
    if not isinstance(url, str):
        raise ValueError(f"URL must be a string, got {type(url).__name__}")
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"not an absolute http(s) URL: {url!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"URL must not carry credentials: {url!r}")
    host = parts.hostname.lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"bad port in URL: {url!r}") from exc
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, parts.fragment))


def normalize_realm(realm_url: str) -> str:
    """The canonical form of a realm URL (:func:`pyauth_web.realms.canonical_realm`, the CPython
    implementation of the browser's rules); raises :class:`InvalidRealm`."""
    return canonical_realm(realm_url)


_DOT_SEGMENT = re.compile(r"(?:\.|%2e){1,2}", re.IGNORECASE)
_REWRITTEN = re.compile(r"[\\\t\n\r]")


def is_resolved(url: str) -> bool:
    """False when a browser would still rewrite the path of ``url`` before sending it: a dot
    segment (``.``/``..``, also spelled with ``%2e``), a ``\\``, or a tab or newline before
    the query. A URL serialised by the browser's URL parser never has these, so a URL that
    does was not canonicalised, and must not be matched against realm prefixes.
    (A safety net only: the browser adapter canonicalises with the real WHATWG parser.)"""
    head = re.split(r"[?#]", url, maxsplit=1)[0]
    if _REWRITTEN.search(head):
        return False
    return not any(_DOT_SEGMENT.fullmatch(seg) for seg in urlsplit(head).path.split("/"))


def token_expiry(token: str) -> float | None:
    """The token's ``exp`` (seconds since the epoch), or ``None`` when it has none.

    Read with PyJWT *without* verifying the signature (see the module docstring).
    Raises :class:`InvalidToken` when the string is not a JWT or ``exp`` is not a number
    (int or float, not bool) with ``0 <= exp <=`` :data:`MAX_EXP`: NaN, infinities (``1e309``
    in the JSON), huge integers, negative values and strings are all invalid.
    """
    if not isinstance(token, str) or not token:
        raise InvalidToken("token must be a non-empty string")
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except Exception as exc:  # noqa: BLE001 - untrusted input: any decoding failure
        raise InvalidToken(f"not a JWT: {_one_line(exc)}") from exc
    exp = claims.get("exp")
    if exp is None:
        return None
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        raise InvalidToken(f"JWT 'exp' claim is not a number: {_short(exp)}")
    if (isinstance(exp, float) and not math.isfinite(exp)) or not 0 <= exp <= MAX_EXP:
        raise InvalidToken(f"JWT 'exp' claim is out of range [0, {MAX_EXP}]: {_short(exp)}")
    return float(exp)


def _short(value: object) -> str:
    """A short one-line rendering of a claim value for an error message."""
    if isinstance(value, int) and abs(value) > 10**30:  # str() of a huge int is slow or fails
        return f"a {value.bit_length()}-bit integer"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


@dataclass(frozen=True)
class TokenEntry:
    realm: str
    token: str
    exp: float | None  # None: valid until a server says otherwise
    jkt: str | None = None  # cnf.jkt: the DPoP key the token is bound to (pyauth_web.dpop)

    def is_fresh(self, now: float, skew: float) -> bool:
        """Usable now: no ``exp``, or ``exp`` further away than the skew margin."""
        return self.exp is None or now < self.exp - skew


class TokenStore:
    """Tokens by realm, with longest-prefix lookup and skew-aware freshness."""

    def __init__(
        self,
        *,
        clock: Clock = time.time,
        skew: float = DEFAULT_SKEW_SECONDS,
        canonical: Canonicaliser = canonical_realm,
    ) -> None:
        """``canonical`` turns a realm URL into its canonical form or raises
        :class:`InvalidRealm`: in the page, the browser's URL parser (the adapter's
        ``urls.realm``); under CPython, :func:`pyauth_web.realms.canonical_realm`."""
        if skew < 0:
            raise ValueError("skew must be >= 0")
        self.canonical_realm = canonical
        self.clock = clock
        self.skew = float(skew)
        self._entries: dict[str, TokenEntry] = {}

    # -- mutation -------------------------------------------------------------------------
    def set(self, realm_url: str, token: str) -> TokenEntry:
        realm = self.canonical_realm(realm_url)
        entry = TokenEntry(realm, token, token_expiry(token), bound_jkt(token))
        self._entries[realm] = entry
        return entry

    def remove(self, realm_url: str) -> bool:
        return self._entries.pop(self.canonical_realm(realm_url), None) is not None

    def clear(self) -> None:
        self._entries.clear()

    # -- queries --------------------------------------------------------------------------
    def entries(self) -> dict[str, TokenEntry]:
        return dict(self._entries)

    def realm_for(self, url: str) -> str | None:
        """Longest realm prefix (among realms holding a token) that ``url`` falls under.

        ``url`` must be canonical (as the browser sends it): one whose path the browser
        would still rewrite (see :func:`is_resolved`) is in no realm."""
        try:
            norm = normalize_url(url)
        except ValueError:
            return None
        if not is_resolved(norm):
            return None
        return realm_of(norm, self._entries)

    def lookup(self, url: str) -> TokenEntry | None:
        """The fresh token for ``url`` (longest prefix), or ``None`` when missing or near expiry."""
        realm = self.realm_for(url)
        if realm is None:
            return None
        entry = self._entries[realm]
        return entry if entry.is_fresh(self.clock(), self.skew) else None

    # -- serialized form (what localStorage holds) ------------------------------------------
    def dumps(self) -> str:
        return json.dumps({r: e.token for r, e in sorted(self._entries.items())})

    def loads(self, raw: str | None) -> list[str]:
        """Replace the contents with the JSON object ``raw``; never raises.

        Bad JSON, a non-object, bad realm keys, non-JWT values and tokens with an invalid
        ``exp`` are dropped; the good entries are kept. Returns one human-readable problem
        per dropped item.
        """
        self._entries.clear()
        if raw is None or raw == "":
            return []
        try:
            data = json.loads(raw)
        except Exception as exc:  # noqa: BLE001 - e.g. RecursionError on deep nesting
            return [f"stored session is not JSON ({_one_line(exc)}); ignored"]
        if not isinstance(data, dict):
            return [f"stored session is a JSON {type(data).__name__}, not an object; ignored"]
        return self._load_pairs(data.items())

    def _load_pairs(self, pairs: Iterable[tuple[object, object]]) -> list[str]:
        problems = []
        for realm, token in pairs:
            try:
                if not isinstance(realm, str) or not isinstance(token, str):
                    raise ValueError("realm and token must be strings")
                self.set(realm, token)
            except Exception as exc:  # noqa: BLE001 - one bad entry never fails the load
                problems.append(f"dropped stored entry {str(realm)[:80]!r}: {_one_line(exc)}")
        return problems
