"""A stream's observable state (SSE and WebSocket clients share it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class StateReporter:
    """``state`` plus an ``on_state(state)`` callback fired on every change."""

    on_state: Callable[[str], Any] | None = None
    _state = ""

    @property
    def state(self) -> str:
        return self._state

    def _set_state(self, state: str) -> None:
        if state != self._state:
            self._state = state
            if self.on_state is not None:
                self.on_state(state)
