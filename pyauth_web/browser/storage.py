"""The session in ``localStorage``: the host's way in and out, not the authority.

The authority is the app's session record (:mod:`pyauth_web.browser.records`); ``localStorage``
holds its *mirror* (``{realmURL: token}``, written inside each record transaction) for the host
to read, and the host may write it itself (its own sign-in, its own logout). This module reads
the stored value, writes the mirror, notices changes it did not make (the ``storage`` event from
other tabs, with the value before; a re-read in this tab, where no event fires) and removes what
an older bundle kept beside it (refresh tokens in ``storageKey + ':refresh'``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import js
from pyodide.ffi.wrappers import add_event_listener

from pyauth_web.oauth import RefreshTokenMap


def legacy_refresh_key(storage_key: str) -> str:
    """Where bundles before the session record kept the OAuth refresh tokens."""
    return f"{storage_key}:refresh"


class SessionStorage:
    def __init__(self, key: str) -> None:
        self.key = key
        self.seen: str | None = None  # the stored value of the session this tab follows

    def read_raw(self) -> str | None:
        raw = js.localStorage.getItem(self.key)
        return raw if isinstance(raw, str) else None

    def changed(self) -> bool:
        """Storage holds something else than the session this tab follows."""
        return self.read_raw() != self.seen

    def write(self, stored: str | None) -> None:
        """Make storage hold ``stored`` (the record's mirror), if it holds something else. (What
        this tab has *seen* changes only once it follows the record: ``seen``.)"""
        if self.read_raw() != stored:
            if stored is None:
                js.localStorage.removeItem(self.key)
            else:
                js.localStorage.setItem(self.key, stored)

    def take_legacy_refresh(self) -> RefreshTokenMap | None:
        """The refresh tokens an older bundle kept in ``localStorage``, removed from there
        (``None``: there were none). They move into the record: one place holds them."""
        key = legacy_refresh_key(self.key)
        raw = js.localStorage.getItem(key)
        if not isinstance(raw, str):
            return None
        js.localStorage.removeItem(key)
        return RefreshTokenMap.loads(raw)

    def has_legacy_refresh(self) -> bool:
        return isinstance(js.localStorage.getItem(legacy_refresh_key(self.key)), str)

    def drop_legacy_refresh(self) -> None:
        js.localStorage.removeItem(legacy_refresh_key(self.key))

    def on_change(self, callback: Callable[[str | None, bool], None]) -> None:
        """``callback(before, cleared)`` when another tab changes the session (``before``: the
        value it replaced), or clears all of ``localStorage`` (the event's key is then null:
        ``cleared``; the runtime never clears storage, so that is the host's removal). The
        listener lives as long as the page."""

        def on_storage(event: Any) -> None:
            if event.storageArea != js.localStorage:
                return
            if not isinstance(event.key, str):
                callback(None, True)
                return
            if event.key != self.key:
                return
            old = event.oldValue
            callback(old if isinstance(old, str) else None, False)

        add_event_listener(js.window, "storage", on_storage)
