"""The three refreshers (one interface: ``async (realm) -> token``), bound to browser I/O.

- :func:`callback_refresher`: the host's ``refresh(realmURL)`` function;
- :func:`url_refresher`: ``POST`` to a token URL with credentials, JSON ``{token}`` back;
- :class:`OAuthRefresher`: the OAuth 2.0 ``refresh_token`` grant (RFC 6749 §6), public client,
  with refresh-token rotation (the rule is the core's :class:`pyauth_web.oauth.RefreshTokenGrant`).
  The refresh tokens live in the app's session record beside the access tokens
  (:class:`RefreshTokens`: the session, which read the record under the cross-tab lock), so
  every tab spends the newest; one tab at a time reads and spends a refresh token, and the
  rotated one is stored with the new access token in one transaction, only if the session is
  still the one it belongs to (:meth:`pyauth_web.record.SessionRecord.refreshed`).

All failures become :class:`~pyauth_web.refresh.RefreshError` so the coordinator can tell
transient (network, 5xx, 429) from final (400 ``invalid_grant``, 401, 403) ones. The coordinator
cancels a refresher at its deadline: the two that make requests then abort them. Requests that
carry a credential never follow a redirect (``redirect: 'manual'``: a redirect is a final
failure, and nothing is sent to the redirect's target).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import js
from pyodide.ffi import JsException, to_js
from pyodide.http import pyfetch

from pyauth_web import oauth
from pyauth_web.refresh import Reason, Refresher, RefreshError, http_error, network_error

OPAQUE_REDIRECT = "opaqueredirect"  # Response.type of a redirect under redirect: 'manual'


def _oauth_error(body: str) -> tuple[str | None, str | None]:
    try:
        data = json.loads(body)
    except ValueError:
        return None, None
    if not isinstance(data, dict):
        return None, None
    err, desc = data.get("error"), data.get("error_description")
    return (err if isinstance(err, str) else None, desc if isinstance(desc, str) else None)


def callback_refresher(fn: Callable[..., Any]) -> Refresher:
    async def refresh(realm: str) -> str:
        try:
            token = await fn(realm)
        except JsException as exc:
            status = getattr(getattr(exc, "js_error", None), "status", None)
            if isinstance(status, int):
                raise http_error(realm, status, description=str(exc)) from exc
            raise network_error(realm, f"refresh callback failed: {exc}") from exc
        if not isinstance(token, str) or not token:
            raise RefreshError(realm, Reason.CALLBACK_RETURNED_NO_TOKEN)
        return token

    return refresh


def url_refresher(url: str) -> Refresher:
    """``url`` must have passed :func:`pyauth_web.oauth.check_endpoint`."""

    async def refresh(realm: str) -> str:
        try:
            resp = await pyfetch(
                url,
                method="POST",
                credentials="include",
                redirect="manual",  # the cookies never follow a redirect
                headers={"Content-Type": "application/json"},
                body=json.dumps({"realmURL": realm}),
            )
            redirected = resp.type == OPAQUE_REDIRECT
            body = "" if redirected else await resp.string()
        except OSError as exc:  # pyfetch's network error
            raise network_error(realm, str(exc)) from exc
        if redirected:
            raise RefreshError(
                realm, Reason.REFRESH_URL_REDIRECTED, description=f"{url} answered with a redirect"
            )
        if not 200 <= resp.status < 300:
            raise http_error(realm, resp.status, *_oauth_error(body))
        try:
            token = json.loads(body).get("token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RefreshError(realm, Reason.REFRESH_URL_RETURNED_NO_TOKEN, status=resp.status)
        return token

    return refresh


class RefreshTokens(Protocol):
    """Where the OAuth refresher finds refresh tokens (the session, as it read the record under
    the cross-tab lock) and drops one the server refused."""

    def refresh_tokens(self) -> oauth.RefreshTokenMap: ...
    def refused(self, realm: str, refresh_token: str) -> Awaitable[None]: ...


class TokenRequestProofs(Protocol):
    """DPoP for token requests (the session): a proof header when the realm's session is
    DPoP-bound (``{}`` when not), and the nonces servers give."""

    async def token_request_headers(self, realm: str, url: str) -> dict[str, str]: ...
    def saw_nonce(self, url: str, nonce: object) -> bool: ...


class OAuthRefresher:
    """The ``refresh_token`` grant against the token endpoint: the rule (which refresh token,
    never one twice, what a reply means) is :class:`pyauth_web.oauth.RefreshTokenGrant`; this
    class sends the request. ``session_token(realm)`` is the realm's access token in the
    record. The rotated refresh token is not stored here: :meth:`rotation` hands it to the
    session, which stores it with the new access token."""

    def __init__(
        self,
        token_endpoint: str,
        client_id: str,
        tokens: RefreshTokens,
        session_token: Callable[[str], str | None],
        scope: str | None = None,
        proofs: TokenRequestProofs | None = None,
    ) -> None:
        self.grant = oauth.RefreshTokenGrant(token_endpoint, client_id, scope)
        self.tokens = tokens
        self._session_token = session_token
        self._proofs = proofs
        self._rotations: dict[str, tuple[str, str]] = {}  # new access token -> (spent, rotated)

    def rotation(self, token: str) -> tuple[str, str] | None:
        """For the access token a refresh brought: the refresh token it spent and the one that
        replaces it (once)."""
        return self._rotations.pop(token, None)

    async def __call__(self, realm: str) -> str:
        # The newest refresh token, whichever tab rotated it, if it belongs to this session.
        exchange = self.grant.start(realm, self.tokens.refresh_tokens(), self._session_token(realm))
        req = exchange.request
        controller = js.AbortController.new()
        while True:
            headers = dict(req.headers)
            if self._proofs is not None:  # a DPoP-bound session: the refresh carries a proof
                try:
                    headers.update(await self._proofs.token_request_headers(realm, req.url))
                except BaseException:  # a lost key, a deadline, a WebCrypto error: nothing was
                    self.grant.rotation(realm).release(exchange.refresh_token)  # sent
                    raise
            init = {
                "method": "POST",
                "headers": headers,
                "body": req.body,
                "credentials": "omit",
                "redirect": "manual",  # the refresh token never follows a redirect
                "signal": controller.signal,
            }
            try:
                resp = await js.fetch(req.url, to_js(init, dict_converter=js.Object.fromEntries))
                redirected = resp.type == OPAQUE_REDIRECT
                body = "" if redirected else await resp.text()
            except JsException as exc:
                self.grant.lost(exchange, Reason.NETWORK_ERROR)
                raise network_error(realm, str(exc)) from exc
            except asyncio.CancelledError:  # the coordinator's deadline (or a logout: discarded)
                self.grant.lost(exchange, Reason.REFRESH_TIMED_OUT)
                controller.abort()
                raise
            kept = False
            if self._proofs is not None and not redirected:
                kept = self._proofs.saw_nonce(req.url, resp.headers.get("DPoP-Nonce"))
            if redirected or not kept:
                break
            if not self.grant.retry_for_nonce(exchange, int(resp.status), body):
                break
        if redirected:  # the refresh token stays spent: a redirect is a final failure
            raise RefreshError(
                realm,
                Reason.TOKEN_ENDPOINT_REDIRECTED,
                description=f"{req.url} answered with a redirect",
            )
        # The rotation is checked against the session as read under the lock; the session then
        # stores the rotated refresh token with the access token, unless the record changed
        # meanwhile (a logout, a new user: both are discarded).
        tokens = self.tokens.refresh_tokens()
        session = self._session_token(realm)
        try:
            access = self.grant.finish(exchange, int(resp.status), body, tokens, session)
        except RefreshError as err:
            if err.invalid_grant:  # no tab presents the refused refresh token again
                await self.tokens.refused(realm, exchange.refresh_token)
            raise
        rotated = tokens.for_session(realm, access)
        if rotated is not None:
            self._rotations[access] = (exchange.refresh_token, rotated)
            while len(self._rotations) > 8:  # bounded: a discarded result leaves its entry
                del self._rotations[next(iter(self._rotations))]
        return access
