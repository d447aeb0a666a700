"""WebSocket token rotation (sans-I/O).

A WebSocket is authenticated once, at the handshake. When its token expires the server says
so (by default with the text message ``{"error": "tokenExpired"}``), or the client sees the
token's ``exp`` come near; the driver then refreshes the token and opens a new socket with
it: a *rotation*. :class:`RotationTracker` decides when to rotate, limits how often (a server
that rejects every fresh token must not cause a refresh loop), and buffers what the
application sends while no socket is usable, so that it goes out on the new socket in order
and exactly once::

    tracker = RotationTracker(RotationPolicy(), clock=time.time)
    # socket open:         for m in tracker.opened(): ws.send(m)
    # application sends m: for m in tracker.send(m): ws.send(m)
    # message m arrives:
    if tracker.should_rotate(m, token_exp=exp):
        if not tracker.begin_rotation():
            ws.close()                                   # tracker.closed_reason: why
        else:
            ok = await refresh_and_reopen()              # a new socket, with the new token
            for m in tracker.end_rotation(ok): new_ws.send(m)

Time is the injected ``clock``: epoch seconds, the scale of a token's ``exp``. ``warnings``
collects messages for the driver to report (and clear); ``dropped`` counts messages lost to
a full send queue.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from .tokens import DEFAULT_SKEW_SECONDS

TOKEN_EXPIRED = "tokenExpired"



class SocketState(StrEnum):
    """The state of a rotating WebSocket. The values are what hosts see (``onStateChange``)."""

    CONNECTING = "connecting"  # the first socket is not open yet
    OPEN = "open"
    ROTATING = "rotating"  # a refresh and reconnect is under way
    CLOSED = "closed"  # final; :attr:`RotationTracker.closed_reason` says why


class CloseReason(StrEnum):
    """Why a rotating WebSocket closed for good (``rotation limit`` reaches hosts as the
    ``reason`` of ``console:auth-error``)."""

    CLOSED = "closed"  # the application closed it
    ROTATION_LIMIT = "rotation limit"  # more than ``max_rotations`` within ``window_s``
    REFRESH_FAILED = "refresh failed"  # a rotation's refresh or reconnect failed
    SERVER_CLOSED = "server closed"  # the server closed the open socket
    CONNECT_FAILED = "connect failed"  # the first socket never opened


def default_is_expiry(message: str) -> bool:
    """True when ``message`` is a JSON object whose ``"error"`` is ``"tokenExpired"``.

    Anything else (other JSON, non-JSON text, a non-``str``) is False. Messages that do not
    contain the text ``tokenExpired`` are rejected without parsing (every inbound message
    goes through here); so an ``"error"`` value spelled with ``\\u`` escapes is not seen.
    """
    if not isinstance(message, str) or TOKEN_EXPIRED not in message:
        return False
    try:
        obj = json.loads(message)
    except (ValueError, RecursionError):
        return False
    return isinstance(obj, dict) and obj.get("error") == TOKEN_EXPIRED


@dataclass(frozen=True)
class RotationPolicy:
    """At most ``max_rotations`` rotations within any ``window_s`` seconds; a send queue of
    ``queue_size`` messages; ``is_expiry(message)`` recognises the server's expiry signal."""

    max_rotations: int = 3
    window_s: float = 60.0
    queue_size: int = 256
    is_expiry: Callable[[str], bool] = default_is_expiry

    def __post_init__(self) -> None:
        if self.max_rotations < 1:
            raise ValueError("max_rotations must be >= 1")
        if not self.window_s > 0:  # also rejects NaN
            raise ValueError("window_s must be > 0")
        if self.queue_size < 1:
            raise ValueError("queue_size must be >= 1")


class RotationTracker:
    """Rotation state of one logical WebSocket connection.

    States: see :class:`SocketState`; ``closed_reason`` (a :class:`CloseReason`) says why it
    closed.
    """

    def __init__(
        self,
        policy: RotationPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.policy = policy or RotationPolicy()
        self.clock = clock
        self.state: SocketState = SocketState.CONNECTING
        self.closed_reason: CloseReason | None = None
        self.dropped = 0
        self.warnings: list[str] = []
        self._rotations: deque[float] = deque()  # start times within the window, oldest first
        self._queue: deque[str] = deque()
        self._overflowing = False  # dropped a message since the last flush (warned already)

    # -- rotation -----------------------------------------------------------------------------
    def should_rotate(
        self,
        message: str | None = None,
        token_exp: float | None = None,
        skew: float = DEFAULT_SKEW_SECONDS,
    ) -> bool:
        """Rotate now? True when ``message`` is the server's expiry signal, or the token
        expires within ``skew`` seconds (``token_exp``: the JWT ``exp``, on ``clock``'s scale).

        False while a rotation is already under way or after close, so a second expiry
        message from the old socket does not start (and spend) another rotation.
        """
        if self.state in (SocketState.ROTATING, SocketState.CLOSED):
            return False
        if message is not None and self.policy.is_expiry(message):
            return True
        return token_exp is not None and token_exp - self.clock() <= skew

    def begin_rotation(self) -> bool:
        """Start a rotation: True, state ``"rotating"``; the driver refreshes and reopens.

        False when it would exceed ``max_rotations`` within the sliding window (start times
        ``> now - window_s``): the connection is closed with reason ``"rotation limit"``.
        False, too, when already closed. Raises ``RuntimeError`` during a rotation.
        """
        if self.state == SocketState.CLOSED:
            return False
        if self.state == SocketState.ROTATING:
            raise RuntimeError("a rotation is already in progress")
        now = self.clock()
        horizon = now - self.policy.window_s
        while self._rotations and self._rotations[0] <= horizon:
            self._rotations.popleft()
        if len(self._rotations) >= self.policy.max_rotations:
            self.close(CloseReason.ROTATION_LIMIT)
            return False
        self._rotations.append(now)
        self.state = SocketState.ROTATING
        return True

    def end_rotation(self, ok: bool) -> list[str]:
        """The rotation finished. ``ok``: the new socket is open; returns the buffered
        messages to send on it now (as :meth:`opened`). Not ``ok`` (the refresh or the
        reconnect failed): closed with reason ``"refresh failed"``; returns ``[]``."""
        if self.state == SocketState.CLOSED:
            return []
        if not ok:
            self.close(CloseReason.REFRESH_FAILED)
            return []
        return self.opened()

    # -- connection ---------------------------------------------------------------------------
    def opened(self) -> list[str]:
        """A socket is open: state ``"open"``; returns the buffered messages to send now.

        After close it stays closed and returns ``[]`` (the driver closes that socket)."""
        if self.state == SocketState.CLOSED:
            return []
        self.state = SocketState.OPEN
        return self.flush()

    def close(self, reason: CloseReason = CloseReason.CLOSED) -> None:
        """Close for good (the first reason is kept); buffered messages are discarded, with a
        warning."""
        if self.state == SocketState.CLOSED:
            return
        self.state = SocketState.CLOSED
        self.closed_reason = reason
        if self._queue:
            self.warnings.append(f"{len(self._queue)} unsent message(s) discarded ({reason})")
            self._queue.clear()

    # -- outbound messages --------------------------------------------------------------------
    def send(self, message: str) -> list[str]:
        """The application sends ``message``; returns what to send on the socket now.

        Open: everything still buffered, then ``message`` (order is kept even if the driver
        has not flushed yet). Connecting or rotating: buffered, returns ``[]``; when the
        queue is full the oldest message is dropped (``dropped`` counts them; one warning per
        overflow, until the next flush). Closed: ``RuntimeError("socket closed")``.
        """
        if self.state == SocketState.CLOSED:
            raise RuntimeError("socket closed")
        if self.state == SocketState.OPEN:
            out = self.flush()
            out.append(message)
            return out
        if len(self._queue) >= self.policy.queue_size:
            self._queue.popleft()
            self.dropped += 1
            if not self._overflowing:
                self._overflowing = True
                self.warnings.append(
                    f"send queue full ({self.policy.queue_size} messages): "
                    "dropping the oldest while the socket is not open"
                )
        self._queue.append(message)
        return []

    def flush(self) -> list[str]:
        """Return and clear the buffered messages, oldest first."""
        out = list(self._queue)
        self._queue.clear()
        self._overflowing = False
        return out

    @property
    def pending(self) -> int:
        """How many messages are buffered."""
        return len(self._queue)
