"""When a stale tab comes back (focus, visibilitychange, pageshow): debounce and dedupe.

Sans-I/O: the adapter feeds events with the current time and arms one timer for
:meth:`Prewarm.deadline`; when it fires, :meth:`Prewarm.due` says whether to pre-warm now.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_DEBOUNCE = 0.150  # s: a burst of events becomes one pre-warm, this long after the last
DEFAULT_MIN_INTERVAL = 1.0  # s: at most one pre-warm per this interval


@dataclass
class Prewarm:
    debounce: float = DEFAULT_DEBOUNCE
    min_interval: float = DEFAULT_MIN_INTERVAL
    _deadline: float | None = field(default=None, init=False)
    _last: float | None = field(default=None, init=False)

    def event(self, now: float, visible: bool) -> float | None:
        """A wake-up event; returns when the adapter's timer should fire (``None``: ignore).

        Events while hidden are ignored (a hidden tab has nobody waiting on it)."""
        if not visible:
            return None
        self._deadline = now + self.debounce
        return self._deadline

    @property
    def deadline(self) -> float | None:
        return self._deadline

    def due(self, now: float) -> bool:
        """The timer fired: pre-warm now? (once per burst, at most once per interval)."""
        if self._deadline is None or now < self._deadline:
            return False
        self._deadline = None
        if self._last is not None and now - self._last < self.min_interval:
            return False
        self._last = now
        return True
