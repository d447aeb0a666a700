"""OAuth 2.0 refresh (RFC 6749 section 6, ``refresh_token`` grant) for a public client. Sans-I/O.

:func:`build_refresh_request` makes the request, the browser adapter sends it, and
:func:`parse_token_response` turns the reply into a :class:`TokenResponse` or a
:class:`~pyauth_web.refresh.RefreshError` classified by the rules in :mod:`pyauth_web.refresh`
(429/5xx retryable; ``invalid_grant``, 401, 403 and other 4xx final).

A public client has no secret: it identifies itself with ``client_id`` in the body and sends
no ``Authorization`` header (RFC 6749 sections 2.3.1, 3.2.1).
"""

from __future__ import annotations

import json
import math
from typing import NamedTuple
from urllib.parse import urlencode, urlsplit

from .refresh import RefreshError, http_error, is_retryable_status
from .tokens import normalize_url

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
REFRESH_TOKEN_USED = "refresh_token_used"
NO_REFRESH_TOKEN = "no refresh token"
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


class RefreshRequest(NamedTuple):
    url: str
    headers: dict[str, str]
    body: str


class TokenResponse(NamedTuple):
    access_token: str
    refresh_token: str | None  # None: the server did not rotate; keep using the old one
    expires_in: float | None
    token_type: str


def check_endpoint(url: object, name: str = "token endpoint") -> str:
    """The one rule for URLs that receive a credential (``tokenEndpoint``, ``refreshURL``):
    absolute, https — or http on a loopback host (127.0.0.0/8, ::1, localhost) —, no
    credentials, no fragment. Returns the normalized URL; raises ``ValueError`` naming ``name``."""
    if not isinstance(url, str) or not url:
        raise ValueError(f"{name} must be an absolute URL, got {url!r}")
    try:
        norm = normalize_url(url)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
    parts = urlsplit(norm)
    host = parts.hostname or ""
    loopback = host in _LOOPBACK or host.startswith("127.")
    if parts.scheme != "https" and not loopback:
        raise ValueError(f"{name} must use https (http only on loopback): {url!r}")
    if parts.fragment:
        raise ValueError(f"{name} must not have a fragment: {url!r}")
    return norm


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
    """The current refresh token, handed out at most once: never send a used one twice.

    With rotation (RFC 9700 section 4.14) a refresh token is single-use, and an
    authorization server that sees one come back may revoke the whole grant. So
    :meth:`take` marks the token used; a second :meth:`take` raises until :meth:`accept`
    stores the reply's new token. If the reply carried none, the server does not rotate and
    the old token is handed out again. After a failure, :meth:`release` makes the token
    available again; call it only when the server cannot have used it (e.g. a 429 reply),
    not after a network error, when the reply (and maybe a rotation) was lost.
    """

    def __init__(self, refresh_token: str | None = None, *, realm: str = "") -> None:
        self.realm = realm
        self._current: str | None = None
        self._used: set[str] = set()
        if refresh_token is not None:
            self.set(refresh_token)

    @property
    def available(self) -> bool:
        return self._current is not None and self._current not in self._used

    def set(self, refresh_token: str) -> None:
        """A refresh token from the host (a new login). A previously used one stays refused."""
        if not refresh_token:
            raise ValueError("refresh_token must be non-empty")
        self._current = refresh_token

    def take(self) -> str:
        """The token to send now, marked used. Raises a final :class:`RefreshError` if none."""
        token = self._current
        if token is None:
            raise RefreshError(self.realm, NO_REFRESH_TOKEN, retryable=False)
        if token in self._used:
            raise RefreshError(self.realm, REFRESH_TOKEN_USED, retryable=False)
        self._used.add(token)
        return token

    def accept(self, response: TokenResponse) -> None:
        """Record a successful reply: its rotated token, or re-arm the old one if none."""
        if response.refresh_token is None:
            if self._current is not None:
                self._used.discard(self._current)
        else:
            self.set(response.refresh_token)

    def release(self, token: str) -> None:
        """``token`` was provably not consumed: it may be sent again (if still current)."""
        if token == self._current:
            self._used.discard(token)

    def clear(self) -> None:
        """Logout: forget the current token (used ones stay refused)."""
        self._current = None
