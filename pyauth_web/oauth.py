"""OAuth 2.0 refresh (RFC 6749 section 6, ``refresh_token`` grant) for a public client. Sans-I/O.

:func:`build_refresh_request` makes the request, the browser adapter sends it, and
:func:`parse_token_response` turns the reply into a :class:`TokenResponse` or a
:class:`~pyauth_web.refresh.RefreshError` classified by the rules in :mod:`pyauth_web.refresh`
(429/5xx retryable; ``invalid_grant``, 401, 403 and other 4xx final).

A public client has no secret: it identifies itself with ``client_id`` in the body and sends
no ``Authorization`` header (RFC 6749 sections 2.3.1, 3.2.1).

:class:`RefreshTokenGrant` is the whole rule the browser runs: which refresh token to send
(:class:`RefreshTokenMap`: the one paired with the session), never one twice
(:class:`RefreshTokenRotation`), and what the reply means.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import re
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import urlencode, urlsplit

from . import dpop
from .realms import InvalidRealm, check_realm
from .refresh import Reason, RefreshError, http_error, is_retryable_status
from .tokens import normalize_url

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
_FORBIDDEN_URL_CHARS = re.compile(r"[\x00-\x20\x7f\\]")  # whitespace, controls, backslash


class RefreshRequest(NamedTuple):
    url: str
    headers: dict[str, str]
    body: str


class TokenResponse(NamedTuple):
    access_token: str
    refresh_token: str | None  # None: the server did not rotate; keep using the old one
    expires_in: float | None
    token_type: str


# -- the URLs that receive a credential --------------------------------------------------------
def is_loopback_host(host: str) -> bool:
    """``localhost`` or a loopback IP literal (127.0.0.0/8, ``::1``). Names that merely start
    with ``127.`` (``127.evil.example``) are not."""
    host = host.lower().strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_endpoint(url: object, name: str = "token endpoint") -> str:
    """The one rule for URLs that receive a credential (``oauth.tokenEndpoint``, ``refreshURL``):
    an absolute URL, https (or http only on a loopback host: 127.0.0.0/8, ``::1``,
    ``localhost``), without credentials (``user:pass@``) or fragment, and without whitespace,
    control characters or backslashes (which browsers and Python parse differently).

    Returns the normalized URL (the one to send the request to); raises a one-line
    ``ValueError`` naming ``name`` and the value.
    """
    rule = "an absolute https URL (http only on a loopback host), without credentials or fragment"
    if not isinstance(url, str) or not url or _FORBIDDEN_URL_CHARS.search(url):
        raise ValueError(f"{name} must be {rule}, got {url!r}")
    try:
        norm = normalize_url(url)
    except ValueError:
        raise ValueError(f"{name} must be {rule}, got {url!r}") from None
    parts = urlsplit(norm)
    if parts.fragment or "#" in url:
        raise ValueError(f"{name} must not have a fragment, got {url!r}")
    if parts.scheme != "https" and not is_loopback_host(parts.hostname or ""):
        raise ValueError(f"{name} must use https (http only on a loopback host), got {url!r}")
    return norm


def check_client_id(value: object, name: str = "oauth.clientId") -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


def build_refresh_request(
    token_endpoint: str, client_id: str, refresh_token: str, scope: str | None = None
) -> RefreshRequest:
    """``POST token_endpoint`` with a form-encoded ``refresh_token`` grant.

    The endpoint must be https (RFC 6749 section 3.2), except on a loopback host.
    """
    url = check_endpoint(token_endpoint)
    if not client_id:
        raise ValueError("client_id must be non-empty")
    if not refresh_token:
        raise ValueError("refresh_token must be non-empty")
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id}
    if scope:
        form["scope"] = scope
    headers = {"Content-Type": FORM_CONTENT_TYPE, "Accept": "application/json"}
    return RefreshRequest(url, headers, urlencode(form))


def parse_token_response(status: int, body: str, *, realm: str = "") -> TokenResponse:
    """The token endpoint's reply as a :class:`TokenResponse`; raises :class:`RefreshError`.

    Error replies take ``reason`` from the OAuth ``error`` field (RFC 6749 section 5.2) when
    there is one, else ``"http <status>"``. A 2xx reply that is not a valid token response is
    a final error (retrying would get the same); an unreadable 5xx body stays retryable.
    """
    try:
        data = json.loads(body)
    except (TypeError, ValueError):
        data = None
    if not 200 <= status <= 299:
        fields = data if isinstance(data, dict) else {}
        error, desc = fields.get("error"), fields.get("error_description")
        raise http_error(
            realm,
            status,
            error if isinstance(error, str) and error else None,
            desc if isinstance(desc, str) and desc else None,
        )
    if not isinstance(data, dict):
        raise _malformed(realm, status, "not a JSON object")
    access = data.get("access_token")
    token_type = data.get("token_type")
    refresh = data.get("refresh_token")
    if not isinstance(access, str) or not access:
        raise _malformed(realm, status, "missing access_token")
    if not isinstance(token_type, str) or not token_type:
        raise _malformed(realm, status, "missing token_type")
    if refresh is not None and (not isinstance(refresh, str) or not refresh):
        raise _malformed(realm, status, "refresh_token is not a non-empty string")
    return TokenResponse(
        access, refresh, _expires_in(data.get("expires_in"), realm, status), token_type
    )


def _expires_in(value: object, realm: str, status: int) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):  # some servers send "3600"
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
        raise _malformed(realm, status, "expires_in is not a finite non-negative number")
    return float(value)


def _malformed(realm: str, status: int, what: str) -> RefreshError:
    return RefreshError(
        realm,
        f"malformed token response: {what}",
        status=status,
        retryable=is_retryable_status(status),  # False for 2xx
    )


class RefreshTokenRotation:
    """A realm's current refresh token, handed out at most once: never send a used one twice.

    With rotation (RFC 9700 section 4.14) a refresh token is single-use, and an
    authorization server that sees one come back may revoke the whole grant. So
    :meth:`take` marks the token used; a second :meth:`take` raises until :meth:`accept`
    stores the reply's new token. If the reply carried none, the server does not rotate and
    the old token is handed out again. After a failure, :meth:`release` makes the token
    available again; call it only when the server cannot have used it (a 429 or 5xx reply),
    not after a network error or a deadline (:meth:`lost`), when the reply (and maybe a
    rotation) was lost.

    The browser's OAuth refresher keeps one per realm and calls :meth:`set` before each
    refresh with the token shared storage holds for the session (whichever tab rotated it
    last), or :meth:`clear` when there is none.
    """

    NOT_RESENT = "not resending a refresh token that may have been rotated"

    def __init__(self, refresh_token: str | None = None, *, realm: str = "") -> None:
        self.realm = realm
        self._current: str | None = None
        # Each used token, with the reason to give if it comes up again.
        self._used: dict[str, Reason] = {}
        if refresh_token is not None:
            self.set(refresh_token)

    @property
    def available(self) -> bool:
        return self._current is not None and self._current not in self._used

    def set(self, refresh_token: str) -> None:
        """The current refresh token (a new login, or what shared storage holds now). A
        previously used one stays refused."""
        if not refresh_token:
            raise ValueError("refresh_token must be non-empty")
        self._current = refresh_token

    def take(self) -> str:
        """The token to send now, marked used. Raises a final :class:`RefreshError` when there
        is none (``"no refresh token for this session"``) or it was used already (the reason
        it is spent: ``"refresh token already used"``, or what became of its request)."""
        token = self._current
        if token is None:
            raise RefreshError(self.realm, Reason.NO_REFRESH_TOKEN, retryable=False)
        spent = self._used.get(token)
        if spent is not None:
            raise RefreshError(self.realm, spent, retryable=False, description=self.NOT_RESENT)
        self._used[token] = Reason.REFRESH_TOKEN_USED
        return token

    def accept(self, response: TokenResponse) -> None:
        """Record a successful reply: its rotated token, or re-arm the old one if none."""
        if response.refresh_token is None:
            if self._current is not None:
                self._used.pop(self._current, None)
        else:
            self.set(response.refresh_token)

    def release(self, token: str) -> None:
        """``token`` was provably not consumed: it may be sent again (if still current)."""
        if token == self._current:
            self._used.pop(token, None)

    def lost(self, token: str, reason: Reason) -> None:
        """``token``'s request got no answer (``reason``: a network error, the deadline): the
        server may have rotated it, so it stays used, and refusing it later names ``reason``."""
        if token in self._used:
            self._used[token] = reason

    def clear(self) -> None:
        """No current token (logout, or no refresh token for this session); used ones stay
        refused."""
        self._current = None


# -- refresh tokens bound to their session ------------------------------------------------------
def session_digest(access_token: str) -> str:
    """What a stored refresh token is paired with: the SHA-256 (hex) of the access token it
    came with, so the pairing can be checked without storing the access token twice."""
    return hashlib.sha256(access_token.encode("utf-8")).hexdigest()


_DIGEST = re.compile(r"[0-9a-f]{64}")


class RefreshTokenMap:
    """The refresh tokens shared by a tab's siblings (in the app's session record,
    :class:`pyauth_web.record.SessionRecord`; older bundles kept them in
    ``localStorage[storageKey + ':refresh']``): ``{realm: {"refresh_token": ...,
    "session": sha256(access token)}}``. Sans-I/O.

    A refresh token belongs to the session it came with: :meth:`for_session` hands it out only
    when the realm's current access token is the one it is paired with (so a session the host
    wrote straight into storage, or another user's, never spends it); :meth:`rotate` replaces
    token and pairing together after a refresh. Anything unreadable in the stored value (wrong
    JSON, a realm that is not normalized, an empty token, a bad digest, an entry in an older
    format without a pairing) is dropped, never used.
    """

    def __init__(self) -> None:
        self._entries: dict[str, tuple[str, str]] = {}  # realm -> (refresh token, digest)
        self.dropped = 0  # unreadable entries ignored by loads()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RefreshTokenMap) and self._entries == other._entries

    __hash__ = None  # type: ignore[assignment]  # mutable

    # -- serialized form ---------------------------------------------------------------------
    @classmethod
    def loads(cls, raw: str | None) -> RefreshTokenMap:
        tokens = cls()
        if raw is None:
            return tokens
        try:
            data = json.loads(raw)
        except (TypeError, ValueError, RecursionError):
            tokens.dropped = 1
            return tokens
        if not isinstance(data, dict):
            tokens.dropped = 1
            return tokens
        for realm, value in data.items():
            entry = cls._entry(realm, value)
            if entry is None:
                tokens.dropped += 1
            else:
                tokens._entries[realm] = entry
        return tokens

    @staticmethod
    def _entry(realm: object, value: object) -> tuple[str, str] | None:
        if not isinstance(realm, str) or not isinstance(value, dict):
            return None
        try:  # keys are written canonical (by the browser's URL parser); looked up exactly
            check_realm(realm)
        except InvalidRealm:
            return None
        token, digest = value.get("refresh_token"), value.get("session")
        if not isinstance(token, str) or not token or not isinstance(digest, str):
            return None
        if not _DIGEST.fullmatch(digest):
            return None
        return token, digest

    def dumps(self) -> str | None:
        """The serialized form; ``None`` when empty (remove the storage key)."""
        if not self._entries:
            return None
        return json.dumps(
            {realm: {"refresh_token": t, "session": d} for realm, (t, d) in self._entries.items()},
            sort_keys=True,
        )

    # -- queries and changes -------------------------------------------------------------------
    def realms(self) -> list[str]:
        return sorted(self._entries)

    def for_session(self, realm: str, access_token: str | None) -> str | None:
        """The realm's refresh token if it belongs to the session holding ``access_token``."""
        entry = self._entries.get(realm)
        if entry is None or access_token is None or session_digest(access_token) != entry[1]:
            return None
        return entry[0]

    def refused(self, realm: str, refresh_token: str) -> None:
        """The server refused ``refresh_token`` for good (``invalid_grant``): it is dropped, so
        no tab presents it again (the session it belonged to must sign in anew)."""
        entry = self._entries.get(realm)
        if entry is not None and entry[0] == refresh_token:
            del self._entries[realm]

    def set(self, realm: str, refresh_token: str | None, access_token: str) -> None:
        """A new session for ``realm``: its refresh token (``None``: it has none, so whatever
        was stored for the realm before is dropped)."""
        if refresh_token is None:
            self._entries.pop(realm, None)
            return
        if not isinstance(refresh_token, str) or not refresh_token:
            raise ValueError(f"refreshToken must be a non-empty string, got {refresh_token!r}")
        self._entries[realm] = (refresh_token, session_digest(access_token))

    def rotate(
        self, realm: str, spent: str, session_token: str | None, response: TokenResponse
    ) -> bool:
        """After a successful refresh with ``spent``: pair the reply's refresh token (or, if the
        server did not rotate, ``spent``) with the reply's access token. Only if the realm's
        session is still the one ``spent`` belonged to (``session_token`` is the realm's current
        access token); else nothing changes and ``False`` is returned (logged out, or another
        session was set meanwhile: the reply must be discarded)."""
        if self.for_session(realm, session_token) != spent:
            return False
        self.set(realm, response.refresh_token or spent, response.access_token)
        return True

    def remove(self, realm: str) -> bool:
        return self._entries.pop(realm, None) is not None

    def clear(self) -> None:
        self._entries.clear()


# -- the grant, with rotation, against shared storage --------------------------------------------
@dataclass
class Exchange:
    """One refresh under way: the refresh token it spends and the request to send."""

    realm: str
    refresh_token: str
    request: RefreshRequest
    nonce_retried: bool = False


class RefreshTokenGrant:
    """The ``refresh_token`` grant of a public client with rotation, sans-I/O: the rule the
    browser's OAuth refresher runs (it only reads and writes storage and sends the request).

    Per refresh, under the cross-tab lock::

        exchange = grant.start(realm, tokens, session_token)   # raises RefreshError
        # send exchange.request; no answer: grant.lost(exchange, reason), then fail
        access_token = grant.finish(exchange, status, body, tokens, session_token)

    :meth:`start` takes the realm's refresh token from the shared map only for the session it
    belongs to (``session_token``: the realm's access token in shared storage now) and spends
    it through the realm's :class:`RefreshTokenRotation`, so this tab never sends one twice.
    :meth:`finish` releases it after a 429 or 5xx (the server did not use it), classifies the
    reply (:func:`parse_token_response`), pairs the rotated token with the new access token in
    ``tokens`` (a copy: the browser stores the rotation with the access token, in one session
    record transaction), or raises ``"logged out"`` when the session changed meanwhile (the
    reply is discarded).
    """

    def __init__(self, token_endpoint: str, client_id: str, scope: str | None = None) -> None:
        self.token_endpoint = check_endpoint(token_endpoint, "oauth.tokenEndpoint")
        self.client_id = check_client_id(client_id)
        self.scope = scope
        self._rotations: dict[str, RefreshTokenRotation] = {}

    def carry_over(self, previous: RefreshTokenGrant) -> None:
        """Keep what ``previous`` (this tab's grant before ``configure()`` replaced it) knows of
        spent refresh tokens: a token whose reply was lost stays unsendable whatever the new
        endpoint."""
        for realm, rotation in previous._rotations.items():
            self._rotations.setdefault(realm, rotation)

    def rotation(self, realm: str) -> RefreshTokenRotation:
        rotation = self._rotations.get(realm)
        if rotation is None:
            rotation = self._rotations[realm] = RefreshTokenRotation(realm=realm)
        return rotation

    def start(self, realm: str, tokens: RefreshTokenMap, session_token: str | None) -> Exchange:
        rotation = self.rotation(realm)
        current = tokens.for_session(realm, session_token)
        if current is None:
            rotation.clear()
        else:
            rotation.set(current)
        spent = rotation.take()
        request = build_refresh_request(self.token_endpoint, self.client_id, spent, self.scope)
        return Exchange(realm, spent, request)

    def retry_for_nonce(self, exchange: Exchange, status: int, body: str) -> bool:
        """A DPoP ``use_dpop_nonce`` refusal (400, RFC 9449 §8): the server checks the proof
        before the grant, so the refresh token was not used; send the same exchange once more
        (with a proof carrying the server's nonce). Once per exchange: ``False`` after that."""
        if exchange.nonce_retried or not dpop.asks_for_nonce(status, None, body):
            return False
        exchange.nonce_retried = True
        return True

    def lost(self, exchange: Exchange, reason: Reason) -> None:
        """The request got no answer (``reason``): its refresh token is never sent again."""
        self.rotation(exchange.realm).lost(exchange.refresh_token, reason)

    def finish(
        self,
        exchange: Exchange,
        status: int,
        body: str,
        tokens: RefreshTokenMap,
        session_token: str | None,
    ) -> str:
        """The reply arrived: the new access token, ``tokens`` updated; raises
        :class:`RefreshError` (after an ``invalid_grant``, ``tokens`` no longer holds the refused
        refresh token: the caller drops it where the tokens are kept)."""
        realm, spent = exchange.realm, exchange.refresh_token
        rotation = self.rotation(realm)
        if is_retryable_status(status) or dpop.asks_for_nonce(status, None, body):
            rotation.release(spent)  # 429, 5xx, a DPoP nonce refusal: not consumed
        try:
            response = parse_token_response(status, body, realm=realm)
        except RefreshError as err:
            if err.invalid_grant:
                tokens.refused(realm, spent)
            raise
        if not tokens.rotate(realm, spent, session_token, response):
            raise RefreshError(
                realm, Reason.LOGGED_OUT, description="the session changed during the refresh"
            )
        rotation.accept(response)
        return response.access_token
