"""Timers: the proactive refresh ahead of expiry, and the pre-warm when a stale tab wakes.

The timing decisions are the core's (:func:`pyauth_web.refresh.refresh_at`,
:class:`pyauth_web.prewarm.Prewarm`); this module arms the browser's timers and listens for the
wake-up events. It starts refreshes through ``start_refresh(realm)`` and asks
``can_refresh(realm)`` / ``in_flight(realm)``: it knows nothing else of the session.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Callable
from typing import Any

import js
from pyodide.ffi.wrappers import add_event_listener

from pyauth_web.prewarm import Prewarm
from pyauth_web.refresh import DEFAULT_REFRESH_JITTER, refresh_at
from pyauth_web.tokens import TokenEntry, TokenStore

MAX_TIMER = 30.0  # s: the proactive timer re-checks the wall clock at least this often
WAKE_EVENTS = (
    ("document", "visibilitychange"),
    ("window", "focus"),
    ("window", "pageshow"),
    ("window", "online"),
)


def visible() -> bool:
    return bool(js.document.visibilityState != "hidden")


class RefreshTimers:
    def __init__(
        self,
        store: TokenStore,
        rng: random.Random,
        *,
        can_refresh: Callable[[str], bool],
        in_flight: Callable[[str], bool],
        start_refresh: Callable[[str], None],
        on_prewarm: Callable[[list[str]], None],
    ) -> None:
        self.store = store
        self.jitter = DEFAULT_REFRESH_JITTER
        self._rng = rng
        self._can_refresh = can_refresh
        self._in_flight = in_flight
        self._start_refresh = start_refresh
        self._on_prewarm = on_prewarm
        # realm -> (token, when to refresh it proactively); the jitter is drawn once per token
        self._due: dict[str, tuple[str, float]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self.prewarm = Prewarm()
        self._prewarm_timer: asyncio.TimerHandle | None = None

    # -- planning -----------------------------------------------------------------------------
    def due(self, realm: str) -> float | None:
        planned = self._due.get(realm)
        return None if planned is None else planned[1]

    def plan(self, entry: TokenEntry) -> None:
        planned = self._due.get(entry.realm)
        if planned is not None and planned[0] == entry.token:
            return
        due = refresh_at(entry.exp, self.store.skew, self.jitter, self._rng)
        if due is None or not math.isfinite(due):  # never a timer that cannot be compared
            self._due.pop(entry.realm, None)
        else:
            self._due[entry.realm] = (entry.token, due)

    def plan_all(self) -> None:
        entries = self.store.entries()
        for realm in [r for r in self._due if r not in entries]:
            del self._due[realm]
        for entry in entries.values():
            self.plan(entry)

    def forget(self, realm: str | None = None) -> None:
        """Drop the plan for ``realm`` (all realms when ``None``: skew or jitter changed)."""
        if realm is None:
            self._due.clear()
        else:
            self._due.pop(realm, None)

    # -- the proactive timer ------------------------------------------------------------------
    def schedule(self, after_check: bool = False) -> None:
        """One timer for the earliest proactive refresh (re-checked on every wake-up).

        Long timers drift or freeze in background tabs, so it fires at least every 30 s and
        compares with the wall clock. Right after a check, an overdue realm (hidden tab, or a
        refresh in flight) is looked at again in 30 s, not in a busy loop; failed realms wait
        for a new token."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        dues = [due for realm, (_, due) in self._due.items() if self._can_refresh(realm)]
        if not dues:
            return
        delay = min(dues) - self.store.clock()
        if delay <= 0:
            delay = MAX_TIMER if after_check else 0.0
        self._timer = asyncio.get_event_loop().call_later(min(delay, MAX_TIMER), self._check_due)

    def _check_due(self) -> None:
        """A hidden tab does not refresh ahead of time: nobody is looking, and the pre-warm
        refreshes what is stale when it becomes visible again."""
        self._timer = None
        now = self.store.clock()
        if visible():
            for realm, (_, due) in list(self._due.items()):
                if now >= due and not self._in_flight(realm):
                    self._start_refresh(realm)
        self.schedule(after_check=True)

    # -- wake-ups and the pre-warm ------------------------------------------------------------
    def listen(self, on_wake: Callable[[], object]) -> None:
        """focus / visibilitychange / pageshow / online: ``on_wake()``, then :meth:`wake`.
        The listeners live as long as the page."""

        def handler(_event: Any = None) -> None:
            on_wake()
            self.wake()

        for target, name in WAKE_EVENTS:
            add_event_listener(getattr(js, target), name, handler)

    def wake(self) -> None:
        now = self.store.clock()
        deadline = self.prewarm.event(now, visible())
        self.schedule()  # timers may have been frozen: re-arm against the wall clock
        if deadline is not None:
            self._arm_prewarm(deadline - now)

    def _arm_prewarm(self, delay: float) -> None:
        if self._prewarm_timer is not None:
            self._prewarm_timer.cancel()
        loop = asyncio.get_event_loop()
        self._prewarm_timer = loop.call_later(max(0.001, delay), self._run_prewarm)

    def _run_prewarm(self) -> None:
        self._prewarm_timer = None
        now = self.store.clock()
        deadline = self.prewarm.deadline
        if deadline is not None and now < deadline:  # timers may fire a little early
            self._arm_prewarm(deadline - now)
            return
        if not self.prewarm.due(now):
            return
        skew = self.store.skew
        stale = [e.realm for e in self.store.entries().values() if not e.is_fresh(now, skew)]
        self._on_prewarm(stale)
        for realm in stale:
            self._start_refresh(realm)
