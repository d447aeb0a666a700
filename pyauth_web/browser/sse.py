"""SSE over ``fetch`` with a fresh ``Authorization`` header on every connect.

``EventSource`` cannot send headers, so this reads ``text/event-stream`` from ``fetch`` and
parses it with the sans-I/O :class:`~pyauth_web.sse.SSEDecoder`; reconnects follow
:class:`~pyauth_web.sse_policy.SSEPolicy`. Python::

    from pyauth_web.browser.sse import EventStream
    async with EventStream(url) as stream:
        async for event in stream:
            ...

JS: ``pyauthWeb.stream(url, {onEvent, onStateChange, resync})`` (see :func:`start_stream`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import js
from pyodide.ffi import JsException, to_js

from pyauth_web.browser import source, urls
from pyauth_web.browser.source import TokenSource
from pyauth_web.browser.states import StateReporter
from pyauth_web.refresh import RefreshError
from pyauth_web.sse import DEFAULT_MAX_EVENT_SIZE, ServerSentEvent, SSEDecoder
from pyauth_web.sse_policy import End, Open, Reconnect, RefreshAndReconnect, SSEPolicy, StreamState


class EventStream(StateReporter[StreamState]):
    """An async iterator of :class:`ServerSentEvent`; each connect asks for the current token."""

    def __init__(
        self,
        url: str,
        *,
        runtime: TokenSource | None = None,
        resync: Callable[[], Awaitable[Any]] | None = None,
        on_state: Callable[[str], Any] | None = None,
        policy: SSEPolicy | None = None,
        max_event_size: int = DEFAULT_MAX_EVENT_SIZE,
    ) -> None:
        if runtime is None:
            runtime = source.current()
        canonical = urls.canonical(url)  # connects to, and matches realms on, exactly this
        if canonical is None:
            raise ValueError(f"not a valid URL: {url!r}")
        self.url = canonical
        self.rt = runtime
        self.policy = policy or SSEPolicy()
        self.resync = resync
        self.on_state = on_state
        self.max_event_size = max_event_size
        self.connects = 0
        self._abort: Any = None

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop now: abort the open request; no reconnect happens afterwards."""
        self.policy.close()
        if self._abort is not None:
            self._abort.abort()
        self._set_state(StreamState.CLOSED)

    async def _token(self) -> str | None:
        try:
            return await self.rt.get_token(self.url)
        except RefreshError:
            return None

    async def _connect(self, token: str | None) -> tuple[int | None, Any]:
        """One connect. A DPoP ``use_dpop_nonce`` refusal is sent once more with the nonce; a
        second one counts as a failed connect (backoff), never as a rejected token."""
        resp: Any = None
        for attempt in range(2):
            self._abort = js.AbortController.new()
            headers = self.policy.headers(None)
            init: dict[str, Any] = {"cache": "no-store", "signal": self._abort.signal}
            proof = False
            if token is not None:
                try:  # a new DPoP proof per connect for a bound token
                    headers.update(await self.rt.auth_headers(self.url, "GET", token))
                    proof = "DPoP" in headers
                    redirect = self.rt.redirect_for(urls.for_matching(self.url))
                    init["redirect"] = "error" if proof else redirect
                except RefreshError:
                    token = None  # a lost DPoP key (reported once): connect without it
            init["headers"] = headers
            self.connects += 1
            try:
                resp = await js.fetch(self.url, to_js(init, dict_converter=js.Object.fromEntries))
            except JsException:
                return None, None
            h = resp.headers
            if not proof or not self.rt.saw_response(
                self.url, int(resp.status), h.get("WWW-Authenticate"), h.get("DPoP-Nonce")
            ):
                break
            if attempt == 1:
                return None, None
        return int(resp.status), resp

    async def __aiter__(self) -> AsyncIterator[ServerSentEvent]:
        first = True
        while self.policy.state not in ("expired", "fatal", "closed"):
            if not first and self.resync is not None:
                await self.resync()  # fetch what was missed before re-subscribing
            first = False
            self._set_state(StreamState.CONNECTING)
            token = await self._token()
            status, resp = await self._connect(token)
            action = self.policy.on_connect_result(status)
            if isinstance(action, Open):
                self._set_state(StreamState.OPEN)
                ended: End | None = None
                async for event, end in self._read(resp):
                    if end is not None:
                        ended = end
                        break
                    yield event
                action = ended or self.policy.on_stream_end()
            if isinstance(action, RefreshAndReconnect):
                try:
                    await self.rt.force_refresh(self.url, token)
                except RefreshError:
                    # No fresh token: the same as the server rejecting it a second time.
                    action = self.policy.on_connect_result(401)
            if isinstance(action, Reconnect):
                self._set_state(StreamState.RECONNECTING)
                await asyncio.sleep(action.delay_ms / 1000)
            if isinstance(action, End):
                self._set_state(action.reason)

    async def _read(self, resp: Any) -> AsyncIterator[tuple[ServerSentEvent, End | None]]:
        """Events from one response body, each with the policy's action (None: keep going)."""
        decoder = SSEDecoder(self.max_event_size)
        reader = resp.body.getReader()
        try:
            while True:
                try:
                    chunk = await reader.read()
                except JsException:
                    return  # network dropped mid-stream, or closed by us
                if chunk.done:
                    return
                for event in decoder.feed(chunk.value.to_bytes()):
                    action = self.policy.on_event(event)
                    if decoder.retry is not None:
                        self.policy.on_retry(decoder.retry)
                    yield event, action if isinstance(action, End) else None
                    if isinstance(action, End):
                        return
                if self.policy.state == "closed":
                    return
        finally:
            reader.releaseLock()


class StreamHandle:
    """What ``pyauthWeb.stream`` returns to JS: ``close()`` it when done."""

    def __init__(self, stream: EventStream, on_event: Any) -> None:
        self.stream = stream
        self._on_event = on_event
        self.task = asyncio.ensure_future(self._pump())

    async def _pump(self) -> None:
        async for event in self.stream:
            if self._on_event is not None:
                detail = {"type": event.event, "data": event.data, "id": event.id}
                self._on_event(to_js(detail, dict_converter=js.Object.fromEntries))

    @property
    def state(self) -> str:
        return self.stream.state

    def close(self) -> None:
        self.stream.close()


def start_stream(rt: TokenSource, url: str, options: Any = None) -> StreamHandle:
    """``pyauthWeb.stream(url, {onEvent, onStateChange, resync})``."""
    opts = options.to_py(depth=1) if options is not None else {}

    async def resync() -> None:
        await opts["resync"]()

    stream = EventStream(
        url,
        runtime=rt,
        resync=resync if opts.get("resync") is not None else None,
        on_state=opts.get("onStateChange"),
    )
    return StreamHandle(stream, opts.get("onEvent"))
