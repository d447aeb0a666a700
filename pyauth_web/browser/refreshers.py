"""The three refreshers (one interface: ``async (realm) -> token``), bound to browser I/O.

- :func:`callback_refresher`: the host's ``refresh(realmURL)`` function;
- :func:`url_refresher`: ``POST`` to a token URL with credentials, JSON ``{token}`` back;
- :class:`OAuthRefresher`: the OAuth 2.0 ``refresh_token`` grant (RFC 6749 §6), public client,
  with refresh-token rotation (the rule is the core's :class:`pyauth_web.oauth.RefreshTokenGrant`).
  The refresh tokens live in ``localStorage`` beside the access tokens
  (:class:`RefreshTokenStorage`, the format is :class:`pyauth_web.oauth.RefreshTokenMap`) so
  that every tab uses the newest; the caller holds the cross-tab lock while this runs, so one
  tab at a time reads, spends and replaces a refresh token.

All failures become :class:`~pyauth_web.refresh.RefreshError` so the coordinator can tell
transient (network, 5xx, 429) from final (400 ``invalid_grant``, 401, 403) ones. The coordinator
cancels a refresher at its deadline: the two that make requests then abort them. Requests that
carry a credential never follow a redirect (``redirect: 'manual'``: a redirect is a final
failure, and nothing is sent to the redirect's target).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Container
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


def refresh_key(storage_key: str) -> str:
    """The ``localStorage`` key of the refresh tokens beside the session ``storage_key``."""
    return f"{storage_key}:refresh"


class RefreshTokenStorage:
    """:class:`pyauth_web.oauth.RefreshTokenMap` in ``localStorage[key]``: I/O only. Used by
    every tab (logout and ``setToken`` change it whether or not the tab configured OAuth)."""

    def __init__(self, key: str) -> None:
        self.key = key

    def load(self) -> oauth.RefreshTokenMap:
        raw = js.localStorage.getItem(self.key)
        return oauth.RefreshTokenMap.loads(raw if isinstance(raw, str) else None)

    def save(self, tokens: oauth.RefreshTokenMap) -> None:
        raw = tokens.dumps()
        if raw is None:
            js.localStorage.removeItem(self.key)
        else:
            js.localStorage.setItem(self.key, raw)

    def set(self, realm: str, refresh_token: str | None, access_token: str) -> None:
        tokens = self.load()
        tokens.set(realm, refresh_token, access_token)
        self.save(tokens)

    def remove(self, realm: str) -> None:
        tokens = self.load()
        tokens.remove(realm)
        self.save(tokens)  # unreadable entries go too

    def keep_only(self, realms: Container[str]) -> None:
        """Drop the refresh tokens of realms whose session is gone (a logout the host wrote)."""
        tokens = self.load()
        gone = [realm for realm in tokens.realms() if realm not in realms]
        if gone:
            for realm in gone:
                tokens.remove(realm)
            self.save(tokens)

    def clear(self) -> None:
        js.localStorage.removeItem(self.key)


class TokenRequestProofs(Protocol):
    """DPoP for token requests (the session): a proof header when the realm's session is
    DPoP-bound (``{}`` when not), and the nonces servers give."""

    async def token_request_headers(self, realm: str, url: str) -> dict[str, str]: ...
    def saw_nonce(self, url: str, nonce: object) -> bool: ...


class OAuthRefresher:
    """The ``refresh_token`` grant against the token endpoint: the rule (which refresh token,
    never one twice, what a reply means) is :class:`pyauth_web.oauth.RefreshTokenGrant`; this
    class reads and writes the shared storage and sends the request. ``session_token(realm)``
    reads the realm's current access token from shared storage."""

    def __init__(
        self,
        token_endpoint: str,
        client_id: str,
        tokens: RefreshTokenStorage,
        session_token: Callable[[str], str | None],
        scope: str | None = None,
        proofs: TokenRequestProofs | None = None,
    ) -> None:
        self.grant = oauth.RefreshTokenGrant(token_endpoint, client_id, scope)
        self.tokens = tokens
        self._session_token = session_token
        self._proofs = proofs

    async def __call__(self, realm: str) -> str:
        # The newest refresh token, whichever tab rotated it, if it belongs to this session.
        exchange = self.grant.start(realm, self.tokens.load(), self._session_token(realm))
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
        # Under the cross-tab lock: the rotated refresh token and the access token it belongs
        # to are stored together, unless the session changed meanwhile (logout, a new user).
        tokens = self.tokens.load()
        try:
            return self.grant.finish(
                exchange, int(resp.status), body, tokens, self._session_token(realm)
            )
        finally:  # also a refused refresh token's removal
            self.tokens.save(tokens)
