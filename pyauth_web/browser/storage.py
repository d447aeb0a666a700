"""The stored session in ``localStorage`` (the shared truth of every tab of the app).

:class:`SessionStorage` loads it into the core's :class:`~pyauth_web.tokens.TokenStore`,
persists the store, notices writes it did not make (the ``storage`` event from other tabs; a
re-read before answering in this tab, where no event fires) and hands the realms' refresh
tokens out (:class:`~pyauth_web.browser.refreshers.RefreshTokenStorage`, same app key).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import js
from pyodide.ffi.wrappers import add_event_listener

from pyauth_web.browser import handoff
from pyauth_web.browser.refreshers import RefreshTokenStorage, refresh_key
from pyauth_web.tokens import TokenStore


class SessionStorage:
    def __init__(
        self,
        key: str,
        store: TokenStore,
        warn: Callable[[str], None],
        hand: handoff.Handoff,
        on_lag: Callable[[str], None],
    ) -> None:
        self.key = key
        self.store = store
        self.handoff = hand
        self._on_lag = on_lag  # told when this tab waits for a sibling's token
        self._warn = warn
        self._raw: str | None = None  # the stored session as last read or written
        self._waiters: set[asyncio.Future[None]] = set()

    def read_raw(self) -> str | None:
        raw = js.localStorage.getItem(self.key)
        return raw if isinstance(raw, str) else None

    def changed(self) -> bool:
        """Storage holds something else than what this tab last read or wrote."""
        return self.read_raw() != self._raw

    def load(self, report: bool = False) -> None:
        """Replace the store's contents with the stored session (bad entries dropped; with
        ``report``, warned about)."""
        self._raw = self.read_raw()
        problems = self.store.loads(self._raw)
        if problems and report:
            self._warn("; ".join(problems))

    def token(self, realm: str) -> str | None:
        entry = self.store.entries().get(realm)
        return entry.token if entry else None

    async def reread(self, realm: str) -> str | None:
        """Load the stored session and return the realm's token, read under the cross-tab lock.
        When a sibling's refresh has replaced the token this tab reads (its copy of storage
        lags: see :mod:`~pyauth_web.browser.handoff`), wait for the new one first (bounded)."""
        self.load()
        token = self.token(realm)
        if token is not None and await self.handoff.was_replaced(realm, token):
            self.load()  # the storage event may have come meanwhile
            if self.token(realm) == token:
                self._on_lag(realm)
                await self.next_change(handoff.WAIT)
                self.load()
        return self.token(realm)

    def persist(self) -> None:
        if self.store.entries():
            self._raw = self.store.dumps()
            js.localStorage.setItem(self.key, self._raw)
        else:
            self._raw = None
            js.localStorage.removeItem(self.key)

    def refresh_tokens(self) -> RefreshTokenStorage:
        """The realms' refresh tokens (whether or not this tab configured OAuth: logout and new
        sessions change them in every tab)."""
        return RefreshTokenStorage(refresh_key(self.key))

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when another tab changes the session (or clears all storage: the
        event's key is then null). The listener lives as long as the page."""

        def on_storage(event: Any) -> None:
            if isinstance(event.key, str) and event.key != self.key:
                return
            callback()
            for waiter in self._waiters:
                if not waiter.done():
                    waiter.set_result(None)

        add_event_listener(js.window, "storage", on_storage)

    async def next_change(self, timeout: float) -> bool:
        """Wait for another tab's next change of the session (its ``storage`` event), at most
        ``timeout`` seconds; whether it came."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            async with asyncio.timeout(timeout):
                await waiter
            return True
        except TimeoutError:
            return False
        finally:
            self._waiters.discard(waiter)
