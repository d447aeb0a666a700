"""The three refreshers (one interface: ``async (realm) -> token``), bound to browser I/O.

- :func:`callback_refresher`: the host's ``refresh(realmURL)`` function;
- :func:`url_refresher`: ``POST`` to a token URL with credentials, JSON ``{token}`` back;
- :class:`OAuthRefresher`: the OAuth 2.0 ``refresh_token`` grant (RFC 6749 §6), public client,
  with refresh-token rotation. The refresh tokens live in ``localStorage`` beside the access
  tokens so that every tab uses the newest; the caller holds the cross-tab lock while this
  runs, so one tab at a time reads, spends and replaces a refresh token.

All failures become :class:`~pyauth_web.refresh.RefreshError` so the coordinator can tell
transient (network, 5xx, 429) from final (400 ``invalid_grant``, 401, 403) ones.
"""

from __future__ import annotations

import json
from typing import Any

import js
from pyodide.ffi import JsException, JsProxy, to_js
from pyodide.http import pyfetch

from pyauth_web import oauth
from pyauth_web.refresh import RefreshError, http_error, network_error


def _oauth_error(body: str) -> tuple[str | None, str | None]:
    try:
        data = json.loads(body)
    except ValueError:
        return None, None
    if not isinstance(data, dict):
        return None, None
    err, desc = data.get("error"), data.get("error_description")
    return (err if isinstance(err, str) else None, desc if isinstance(desc, str) else None)


def forget_refresh_tokens(storage_key: str, realm: str | None = None) -> None:
    """Remove the stored refresh token of ``realm`` (all of them when ``None``): logout removes
    every credential, whether or not this tab configured the OAuth refresher."""
    key = f"{storage_key}:refresh"
    if realm is None:
        js.localStorage.removeItem(key)
        return
    raw = js.localStorage.getItem(key)
    try:
        data = json.loads(raw) if isinstance(raw, str) else {}
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    data.pop(realm, None)
    if data:
        js.localStorage.setItem(key, json.dumps(data))
    else:
        js.localStorage.removeItem(key)


def callback_refresher(fn: JsProxy) -> Any:
    async def refresh(realm: str) -> str:
        try:
            token = await fn(realm)
        except JsException as exc:
            status = getattr(getattr(exc, "js_error", None), "status", None)
            if isinstance(status, int):
                raise http_error(realm, status, description=str(exc)) from exc
            raise network_error(realm, f"refresh callback failed: {exc}") from exc
        if not isinstance(token, str) or not token:
            raise RefreshError(realm, "refresh callback returned no token")
        return token

    return refresh


def url_refresher(url: str) -> Any:
    async def refresh(realm: str) -> str:
        try:
            resp = await pyfetch(
                url,
                method="POST",
                credentials="include",
                redirect="error",  # a credential never follows a redirect
                headers={"Content-Type": "application/json"},
                body=json.dumps({"realmURL": realm}),
            )
            body = await resp.string()
        except OSError as exc:  # pyfetch's network error
            raise network_error(realm, str(exc)) from exc
        if not 200 <= resp.status < 300:
            raise http_error(realm, resp.status, *_oauth_error(body))
        try:
            token = json.loads(body).get("token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RefreshError(realm, "refresh URL answered without a token", status=resp.status)
        return token

    return refresh


class OAuthRefresher:
    """``refresh_token`` grant against ``token_endpoint``; refresh tokens in localStorage."""

    def __init__(
        self, token_endpoint: str, client_id: str, storage_key: str, scope: str | None = None
    ) -> None:
        self.token_endpoint = token_endpoint
        self.client_id = client_id
        self.scope = scope
        self.storage_key = storage_key
        self._spent: set[str] = set()  # never send a used refresh token twice

    # refresh tokens by realm, shared by all tabs
    def _load(self) -> dict[str, str]:
        raw = js.localStorage.getItem(self.storage_key)
        try:
            data = json.loads(raw) if isinstance(raw, str) else {}
        except ValueError:
            return {}
        return (
            {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}
            if isinstance(data, dict)
            else {}
        )

    def _save(self, data: dict[str, str]) -> None:
        if data:
            js.localStorage.setItem(self.storage_key, json.dumps(data))
        else:
            js.localStorage.removeItem(self.storage_key)

    def set(self, realm: str, refresh_token: str | None) -> None:
        data = self._load()
        if refresh_token:
            data[realm] = refresh_token
        else:
            data.pop(realm, None)
        self._save(data)

    def clear(self) -> None:
        js.localStorage.removeItem(self.storage_key)

    async def __call__(self, realm: str) -> str:
        refresh_token = self._load().get(realm)  # the newest, whichever tab rotated it
        if refresh_token is None:
            raise RefreshError(realm, "no refresh token", retryable=False)
        if refresh_token in self._spent:
            raise RefreshError(realm, "refresh token already used", retryable=False)
        req = oauth.build_refresh_request(
            self.token_endpoint, self.client_id, refresh_token, self.scope
        )
        self._spent.add(refresh_token)
        try:
            resp = await js.fetch(
                req.url,
                to_js(
                    {
                        "method": "POST",
                        "headers": req.headers,
                        "body": req.body,
                        "credentials": "omit",
                        "redirect": "error",  # the refresh token never follows a redirect
                    },
                    dict_converter=js.Object.fromEntries,
                ),
            )
            body = await resp.text()
        except JsException as exc:
            raise network_error(realm, str(exc)) from exc
        if resp.status == 429 or resp.status >= 500:
            self._spent.discard(refresh_token)  # not consumed by the server: may be retried
        token = oauth.parse_token_response(resp.status, body, realm=realm)
        if token.refresh_token:
            self.set(realm, token.refresh_token)
        return token.access_token
