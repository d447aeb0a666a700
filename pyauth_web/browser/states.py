"""A stream's observable state (SSE and WebSocket clients share it)."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Generic, Literal, TypeVar

S = TypeVar("S", bound=StrEnum)


class StateReporter(Generic[S]):
    """``state`` (a member of the stream's state enum, ``""`` before the first one) plus an
    ``on_state(state)`` callback fired on every change. A JS callback receives the member's
    value (a ``StrEnum`` member crosses to JS as its plain string)."""

    on_state: Callable[[S], object] | None = None
    _state: S | None = None

    @property
    def state(self) -> S | Literal[""]:
        return "" if self._state is None else self._state

    def _set_state(self, state: S) -> None:
        if state != self._state:
            self._state = state
            if self.on_state is not None:
                self.on_state(state)
