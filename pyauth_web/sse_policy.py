"""Reconnect policy of a Server-Sent Events client (sans-I/O).

The browser driver connects, feeds the body to :class:`~pyauth_web.sse.SSEDecoder` and tells
the policy what happened; every call answers with what to do next::

    policy = SSEPolicy()
    action = policy.on_connect_result(status)        # status None: network error
    if isinstance(action, Open):
        for event in events:                         # dispatched by the decoder
            action = policy.on_event(event)          # None: keep reading
            if action is not None:
                break                                # End("fatal")
        else:
            action = policy.on_stream_end()          # Reconnect(delay_ms)
    # Reconnect: wait delay_ms, connect again with policy.headers(token)
    # RefreshAndReconnect: force one token refresh, then connect again at once
    # End(reason): stop ("expired": log in again; "fatal": the server said so; "closed")

Rules:

* ``attempt`` counts *failed connects since the last real event*: every connect result other
  than 200 and every stream that ends without having dispatched an event. A 200 alone resets
  nothing, so a server that accepts and closes at once is reconnected to with growing delays,
  never in a storm. Only a dispatched event (a stream that really worked) resets it.
* Backoff: the delay after failed connect ``n`` (0-based) is ``d = min(base * 2**n, cap_ms)``
  with *equal jitter*: a uniform integer in ``[ceil(d/2), d]``. Equal rather than the full
  jitter of :class:`~pyauth_web.refresh.BackoffPolicy`: the floor of ``d/2`` guarantees the
  delays really grow, while the jitter still spreads many clients reconnecting after a server
  restart.
* ``base`` is ``base_ms``, or the server's ``retry:`` value once one arrived (floored at
  :data:`MIN_RETRY_MS`, so ``retry: 0`` cannot make a storm). ``cap_ms`` bounds every delay,
  a larger server ``retry:`` included: the client keeps its worst-case reconnect latency.
* 401: force one token refresh and reconnect at once (still a failed connect for the
  backoff). A second 401 without a 200 or an event in between means the fresh token was
  rejected too: ``End("expired")``. Network errors and other statuses in between say nothing
  about the token and do not reset that count; a 200 does (the token was accepted, so a 401
  after a long quiet stream is a new expiry, worth one refresh).
* 410 Gone: ``End("expired")``. An event of type ``error``: ``End("fatal")``. Any other
  status or a network error: ``Reconnect``. After :meth:`SSEPolicy.close` (or any ``End``)
  every method answers ``End`` and never a reconnect.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from .sse import ServerSentEvent

DEFAULT_BASE_MS = 1000
DEFAULT_CAP_MS = 15000
MIN_RETRY_MS = 100
"""Floor for a server-sent ``retry:`` used as the backoff base."""



class StreamState(StrEnum):
    """The state of an SSE subscription. The values are what hosts see (``onStateChange``)."""

    CONNECTING = "connecting"
    OPEN = "open"
    RECONNECTING = "reconnecting"
    EXPIRED = "expired"  # the server rejected a fresh token too, or said 410 Gone: log in again
    FATAL = "fatal"  # the server sent an event of type ``error``
    CLOSED = "closed"  # the application unsubscribed


EndReason = Literal[StreamState.EXPIRED, StreamState.FATAL, StreamState.CLOSED]
"""The final states."""


@dataclass(frozen=True)
class Open:
    """The stream is accepted: read events."""


@dataclass(frozen=True)
class Reconnect:
    """Wait ``delay_ms``, then connect again."""

    delay_ms: int


@dataclass(frozen=True)
class RefreshAndReconnect:
    """Force one token refresh (the server rejected the token), then connect after ``delay_ms``."""

    delay_ms: int = 0


@dataclass(frozen=True)
class End:
    """Stop for good: :attr:`StreamState.EXPIRED` (log in again), ``FATAL`` or ``CLOSED``."""

    reason: EndReason


Action = Open | Reconnect | RefreshAndReconnect | End


class SSEPolicy:
    """State and decisions of one SSE subscription (see the module docstring for the rules)."""

    def __init__(
        self,
        base_ms: int = DEFAULT_BASE_MS,
        cap_ms: int = DEFAULT_CAP_MS,
        rng: random.Random | None = None,
    ) -> None:
        if base_ms < 1:
            raise ValueError("base_ms must be >= 1")
        if cap_ms < base_ms:
            raise ValueError("cap_ms must be >= base_ms")
        self.base_ms = base_ms
        self.cap_ms = cap_ms
        self._rng = rng or random.Random()
        self.state: StreamState = StreamState.CONNECTING
        self.last_event_id = ""
        self.attempt = 0  # failed connects since the last real event
        self.server_retry_ms: int | None = None
        self._unauthorized = 0  # 401s since the last 200 or real event
        self._ended: EndReason | None = None

    # -- backoff ------------------------------------------------------------------------------
    def ceiling(self, attempt: int) -> int:
        """Upper bound of the delay after failed connect ``attempt``: ``min(base·2^n, cap)``."""
        if attempt < 0:
            raise ValueError("attempt must be >= 0")
        base = self.base_ms
        if self.server_retry_ms is not None:
            base = max(self.server_retry_ms, MIN_RETRY_MS)
        if attempt >= self.cap_ms.bit_length():  # base >= 1, so base << attempt > cap
            return self.cap_ms
        return min(base << attempt, self.cap_ms)

    def delay(self, attempt: int) -> int:
        """Equal jitter: a uniform integer in ``[ceil(d/2), d]``, ``d = ceiling(attempt)``."""
        d = self.ceiling(attempt)
        return self._rng.randint((d + 1) // 2, d)

    # -- events from the driver ---------------------------------------------------------------
    def on_connect_result(self, status: int | None) -> Action:
        """The response to a connect arrived (``status``), or it failed (``None``)."""
        if self._ended is not None:
            return End(self._ended)
        if status == 200:
            self.state = StreamState.OPEN
            self._unauthorized = 0
            return Open()
        if status == 401:
            self._unauthorized += 1
            if self._unauthorized > 1:
                return self._end(StreamState.EXPIRED)
            self.attempt += 1
            self.state = StreamState.RECONNECTING
            return RefreshAndReconnect(delay_ms=0)
        if status == 410:
            return self._end(StreamState.EXPIRED)
        return self._reconnect()

    def on_event(self, event: ServerSentEvent) -> Action | None:
        """A dispatched event: the stream works. ``None``: keep reading."""
        if self._ended is not None:
            return End(self._ended)
        self.attempt = 0
        self._unauthorized = 0
        self.last_event_id = event.id
        if event.retry is not None:
            self.server_retry_ms = event.retry
        if event.event == "error":
            return self._end(StreamState.FATAL)
        return None

    def on_retry(self, retry_ms: int) -> None:
        """A ``retry:`` field in a block without data (no event dispatched, so no reset).

        The driver passes ``SSEDecoder.retry`` here when it changes; ``retry:`` fields of
        dispatched events arrive through :meth:`on_event` already.
        """
        if retry_ms < 0:
            raise ValueError("retry_ms must be >= 0")
        if self._ended is None:
            self.server_retry_ms = retry_ms

    def on_stream_end(self) -> Action:
        """The server closed the stream, or the network dropped it, while open."""
        if self._ended is not None:
            return End(self._ended)
        return self._reconnect()

    def close(self) -> None:
        """The application unsubscribed: nothing reconnects any more."""
        self._ended = StreamState.CLOSED
        self.state = StreamState.CLOSED

    # -- request ------------------------------------------------------------------------------
    def headers(self, token: str | None) -> dict[str, str]:
        """Request headers for the next connect.

        ``Last-Event-ID`` goes on the wire as UTF-8, as ``EventSource`` sends it; since fetch
        header values are byte strings (code points up to U+00FF, one byte each), a non-ASCII
        id is given here as its UTF-8 bytes read as Latin-1.
        """
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if self.last_event_id:
            headers["Last-Event-ID"] = self.last_event_id.encode(errors="replace").decode("latin-1")
        return headers

    # -- internals ----------------------------------------------------------------------------
    def _reconnect(self) -> Reconnect:
        delay = self.delay(self.attempt)
        self.attempt += 1
        self.state = StreamState.RECONNECTING
        return Reconnect(delay)

    def _end(self, reason: EndReason) -> End:
        self._ended = reason
        self.state = reason
        return End(reason)
