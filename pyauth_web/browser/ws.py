"""WebSocket with token rotation, driving the sans-I/O
:class:`~pyauth_web.ws_rotation.RotationTracker`.

The token goes in the first message (``{"type": "auth", "token"}``, default) or in the URL
(``?access_token=``). When the server says the token expired (a message matching the policy's
predicate, default ``{"error": "tokenExpired"}``) or the token gets within the skew margin, a
new socket is opened with a freshly *forced* refreshed token, then the old one is closed;
messages sent meanwhile are buffered (bounded) and replayed in order. More than 3 rotations in
60 s, or a failed refresh, ends in the terminal ``closed`` state with one
``console:auth-error``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import js
from pyodide.ffi import JsException
from pyodide.ffi.wrappers import add_event_listener, remove_event_listener

from pyauth_web.browser import urls
from pyauth_web.browser.source import TokenSource
from pyauth_web.browser.states import StateReporter
from pyauth_web.refresh import Reason, RefreshError
from pyauth_web.tokens import token_expiry
from pyauth_web.ws_rotation import CloseReason, RotationPolicy, RotationTracker, SocketState


class RotatingSocket(StateReporter[SocketState]):
    def __init__(
        self,
        runtime: TokenSource,
        url: str,
        *,
        token_in: str = "message",
        on_message: Callable[[Any], Any] | None = None,
        on_state: Callable[[str], Any] | None = None,
        policy: RotationPolicy | None = None,
    ) -> None:
        if token_in not in ("message", "url"):
            raise ValueError("tokenIn must be 'message' or 'url'")
        self.rt = runtime
        # Opened at exactly the browser's canonical ws(s) URL, matched against realms as its
        # http(s) equivalent. One that does not parse (or has another scheme) gets no token,
        # and the WebSocket constructor then rejects it.
        self.url = urls.websocket(url) or str(url)
        self.http_url = urls.for_matching(self.url)
        self.token_in = token_in
        self.on_message = on_message
        self.on_state = on_state
        self.tracker = RotationTracker(policy, clock=runtime.now)
        self.token: str | None = None
        self.ws: Any = None
        self.rotations = 0
        self._listeners: list[tuple[Any, str, Callable[[Any], None]]] = []
        self._expiry: asyncio.TimerHandle | None = None

    # -- sockets --------------------------------------------------------------------------
    async def _open(self, token: str | None) -> Any:
        url = self.url
        auth = await self._auth_message(token) if token else None
        in_message = self.token_in == "message" or (auth is not None and "dpop" in auth)
        if not in_message and token:  # a DPoP-bound token never goes in a URL without its proof
            url += ("&" if "?" in url else "?") + urlencode({"access_token": token})
        ws = js.WebSocket.new(url)
        opened: asyncio.Future[bool] = asyncio.get_event_loop().create_future()

        def settle(ok: bool) -> None:
            if not opened.done():
                opened.set_result(ok)

        def closed(event: Any) -> None:
            settle(False)
            self._on_close(ws, event)

        self._listen(ws, "open", lambda _e: settle(True))
        self._listen(ws, "error", lambda _e: settle(False))
        self._listen(ws, "close", closed)
        self._listen(ws, "message", lambda e: self._on_message(ws, e))
        if not await opened:
            self._forget(ws)
            raise ConnectionError(f"WebSocket to {self.url} did not open")
        if in_message and auth is not None:
            ws.send(json.dumps(auth))
        return ws

    async def _auth_message(self, token: str) -> dict[str, str]:
        """``{"type": "auth", "token"}``; for a DPoP-bound token also ``"dpop"``: a proof with
        ``htm`` GET and ``htu`` the socket's http(s) URL (a handshake carries no headers). A
        bound token goes in this message even with ``tokenIn: 'url'``."""
        message = {"type": "auth", "token": token}
        try:
            headers = await self.rt.auth_headers(self.http_url or self.url, "GET", token)
        except RefreshError:
            return message  # a lost DPoP key, reported once: the server refuses the socket
        if "DPoP" in headers:
            message["dpop"] = headers["DPoP"]
        return message

    def _listen(self, ws: Any, name: str, handler: Callable[[Any], Any]) -> None:
        add_event_listener(ws, name, handler)
        self._listeners.append((ws, name, handler))

    def _forget(self, ws: Any) -> None:
        """Drop a socket's listeners (and their proxies)."""
        keep = []
        for target, name, handler in self._listeners:
            if target is ws:
                remove_event_listener(target, name, handler)
            else:
                keep.append((target, name, handler))
        self._listeners = keep

    def _on_message(self, ws: Any, event: Any) -> None:
        if ws is not self.ws:  # the old socket during a swap: its news is stale
            return
        data = event.data
        if isinstance(data, str) and self.tracker.should_rotate(message=data):
            self._spawn(self._rotate())
        elif self.on_message is not None:
            self.on_message(data)

    def _on_close(self, ws: Any, event: Any) -> None:
        # Listeners are removed after this handler returns, not from inside it.
        loop = asyncio.get_event_loop()
        if ws is self.ws and self.tracker.state == "open":
            self.tracker.close(CloseReason.SERVER_CLOSED)
            loop.call_soon(self._finish)
        elif ws is not self.ws:
            loop.call_soon(self._forget, ws)

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        self._set_state(SocketState.CONNECTING)
        try:
            self.token = await self.rt.get_token(self.http_url) if self.http_url else None
            self.ws = await self._open(self.token)
        except (RefreshError, ConnectionError, JsException):
            self.tracker.close(CloseReason.CONNECT_FAILED)
            self._finish()
            return
        for message in self.tracker.opened():
            self.ws.send(message)
        self._set_state(SocketState.OPEN)
        self._arm_expiry()

    def _arm_expiry(self) -> None:
        """Rotate ahead of time when the token gets within the skew margin."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        try:
            exp = token_expiry(self.token) if self.token else None
        except ValueError:
            exp = None
        if exp is None:
            return
        delay = max(0.0, exp - self.rt.skew - self.rt.now())
        self._expiry = asyncio.get_event_loop().call_later(delay, self._expiry_due)

    def _expiry_due(self) -> None:
        self._expiry = None
        if self.tracker.should_rotate(token_exp=token_expiry(self.token or ""), skew=self.rt.skew):
            self._spawn(self._rotate())

    async def _rotate(self) -> None:
        if not self.tracker.begin_rotation():  # the 4th rotation within the window
            self._fail(CloseReason.ROTATION_LIMIT)
            return
        self._set_state(SocketState.ROTATING)
        try:
            if self.http_url is None:
                raise RefreshError(self.url, Reason.NO_TOKEN_TO_REFRESH)
            token = await self.rt.force_refresh(self.http_url, self.token)
            new_ws = await self._open(token)
        except (RefreshError, ConnectionError, JsException):
            self.tracker.end_rotation(False)
            self._finish()  # a failed refresh was reported by the coordinator already
            return
        old, self.ws, self.token = self.ws, new_ws, token
        self.rotations += 1
        old.close(1000, "token rotated")
        for message in self.tracker.end_rotation(True):
            new_ws.send(message)
        self._set_state(SocketState.OPEN)
        self._arm_expiry()

    def _fail(self, reason: str) -> None:
        self.rt.report_auth_error(self.http_url or self.url, reason)
        self._finish()

    def _finish(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if self.ws is not None and self.ws.readyState <= 1:
            self.ws.close(1000, "closed")
        for target, name, handler in self._listeners:
            remove_event_listener(target, name, handler)
        self._listeners = []
        self._set_state(SocketState.CLOSED)

    def _spawn(self, coro: Any) -> None:
        self.rt.spawn(coro)

    # -- API ------------------------------------------------------------------------------
    def send(self, message: str) -> None:
        """Send now, or buffer while (re)connecting; raises once the socket is closed."""
        reported = len(self.tracker.warnings)
        for item in self.tracker.send(message):
            self.ws.send(item)
        for warning in self.tracker.warnings[reported:]:
            self.rt.warn(f"WebSocket {self.url}: {warning}")

    def close(self) -> None:
        self.tracker.close()
        self._finish()

    @property
    def warnings(self) -> list[str]:
        return list(self.tracker.warnings)
