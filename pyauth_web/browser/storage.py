"""The stored session in ``localStorage`` (the shared truth of every tab of the app).

:class:`SessionStorage` loads it into the core's :class:`~pyauth_web.tokens.TokenStore`,
persists the store, notices writes it did not make (the ``storage`` event from other tabs; a
re-read before answering in this tab, where no event fires) and hands the realms' refresh
tokens out (:class:`~pyauth_web.browser.refreshers.RefreshTokenStorage`, same app key).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import js
from pyodide.ffi.wrappers import add_event_listener

from pyauth_web.browser.refreshers import RefreshTokenStorage, refresh_key
from pyauth_web.tokens import TokenStore


class SessionStorage:
    def __init__(self, key: str, store: TokenStore, warn: Callable[[str], None]) -> None:
        self.key = key
        self.store = store
        self._warn = warn
        self._raw: str | None = None  # the stored session as last read or written

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

        add_event_listener(js.window, "storage", on_storage)
