"""The app's session record: the one authority that orders session state. Sans-I/O.

``localStorage`` is how the host and the runtime share a session, but it is not consistent
across tabs in the moment: a write reaches the other tabs a few milliseconds later
(Chromium: 1-3 ms, more under load), and a write can even land after a newer one. Deciding
anything on it (is this session still logged in? did a sibling just refresh?) races. So each
app's session lives in one :class:`SessionRecord`, kept in IndexedDB, which every tab and the
service worker read and change only in transactions (a transaction sees every transaction
committed before it, in every tab and worker). The browser adapter
(:mod:`pyauth_web.browser.records`) runs each change as one read-modify-write transaction and
writes the ``localStorage`` copy of the session (the *mirror*, :meth:`SessionRecord.stored`)
inside it.

The record holds:

- ``tokens``: the session, realm -> access token (the mirror is their JSON, the stored format);
- ``refresh``: the OAuth refresh tokens, each paired with its access token
  (:class:`pyauth_web.oauth.RefreshTokenMap`);
- ``version``: advanced by every change, to at least the wall clock in milliseconds
  (``max(version + 1, now)``: a record made anew — the host deleted the database, or a tab kept
  one in memory — still orders after the old one). Every message that gives the worker a token
  carries the version it was read at;
- ``cleared``: the version of the last logout, and ``since``: realm -> the version at which its
  current session began or ended (a new sign-in, a removal, a host write). The service worker
  keeps a token from a message or reply of version ``v`` only if ``v >= cleared`` and
  ``v >= since[realm]`` (:meth:`SessionRecord.accepts`): nothing read before a logout, a
  removal or a user switch can bring a token back, whatever order messages arrive in;
- ``mirrors`` and ``emptied``: what the runtime wrote to ``localStorage`` (fingerprints of its
  recent values, and when it last removed the value), so that :meth:`SessionRecord.classify`
  can tell the host's own writes (taken into the record) from a value that lags or landed late
  (the record decides; the mirror is written again).

Rules for changes: a refresh result is kept only if the realm still holds the token it replaced
(:meth:`SessionRecord.refreshed`), so a logout, a removal or a new sign-in in any tab, committed
before it, wins. A logout (:meth:`SessionRecord.logout`) empties the session and advances
``cleared``. The loader's own logout (when the runtime could not start) and the worker read the
same JSON: they use only the fields ``version``, ``cleared``, ``since``, ``tokens``, ``refresh``
and ``emptied`` (a missing field is empty or zero).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from .oauth import RefreshTokenMap
from .realms import InvalidRealm, check_realm

MAX_MIRRORS = 64
"""Fingerprints of the runtime's recent writes kept: a value older than these that shows up in
storage again is taken for the host's."""
MAX_SINCE = 256
"""Realms whose session start is remembered; past it the oldest mark goes and ``cleared`` rises
to it (older messages are then refused for every realm: never a token brought back)."""
LAG_MS = 2000
"""For this long after the runtime removed the stored session, storage that shows no session
while the record holds one is taken for storage lagging (a sign-in right after a logout), not
for the host's removal."""
MAX_TOKEN_LENGTH = 65536
MAX_VERSION = 2**52
"""Versions beyond this are not from this code (a record someone wrote by hand): its order is
started anew."""


class Stored(Enum):
    """What the value ``localStorage`` shows is, against the record."""

    SYNC = "sync"  # the mirror of the record
    STALE = "stale"  # an earlier value the runtime wrote: lagging, or a late write (rewrite it)
    HOST = "host"  # written by the host (or another program): take it into the record


def fingerprint(stored: str) -> str:
    """A short fingerprint of a stored session value (not a secret, not an integrity check)."""
    return hashlib.sha256(stored.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _count(value: object) -> int:
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_VERSION
    return value if ok else 0  # type: ignore[return-value]


def _realm(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        check_realm(value)
    except InvalidRealm:
        return None
    return value


@dataclass
class SessionRecord:
    version: int = 0
    cleared: int = 0
    since: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    refresh: RefreshTokenMap = field(default_factory=RefreshTokenMap)
    mirrors: list[str] = field(default_factory=list)
    emptied: float = 0.0  # ms since the epoch (the tab's clock) of the last removal

    # -- serialized form (IndexedDB holds the JSON text) ---------------------------------------
    @classmethod
    def loads(cls, text: object) -> SessionRecord:
        """The record in ``text``; never raises: anything unreadable is left out (a record
        that is not JSON is an empty one; a bad entry is dropped)."""
        record = cls()
        try:
            data = json.loads(text) if isinstance(text, str) else None
        except (ValueError, RecursionError):
            data = None
        if not isinstance(data, dict):
            return record
        record.version = _count(data.get("version"))
        record.cleared = min(_count(data.get("cleared")), record.version)
        since = data.get("since")
        for realm, at in (since.items() if isinstance(since, dict) else ()):
            if _realm(realm) is not None:
                record.since[realm] = min(_count(at), record.version)
        tokens = data.get("tokens")
        for realm, token in (tokens.items() if isinstance(tokens, dict) else ()):
            if _realm(realm) and isinstance(token, str) and 0 < len(token) <= MAX_TOKEN_LENGTH:
                record.tokens[realm] = token
        refresh = data.get("refresh")
        if isinstance(refresh, dict):
            record.refresh = RefreshTokenMap.loads(json.dumps(refresh))
        mirrors = data.get("mirrors")
        if isinstance(mirrors, list):
            kept = [m for m in mirrors if isinstance(m, str) and len(m) <= 64]
            record.mirrors = kept[-MAX_MIRRORS:]
        emptied = data.get("emptied")
        if isinstance(emptied, int | float) and not isinstance(emptied, bool) and emptied >= 0:
            record.emptied = float(min(emptied, 1e15))
        return record

    def dumps(self) -> str:
        refresh = self.refresh.dumps()
        return json.dumps(
            {
                "version": self.version,
                "cleared": self.cleared,
                "since": self.since,
                "tokens": self.tokens,
                "refresh": json.loads(refresh) if refresh else {},
                "mirrors": self.mirrors,
                "emptied": self.emptied,
            },
            sort_keys=True,
        )

    # -- the mirror -----------------------------------------------------------------------------
    def stored(self) -> str | None:
        """The session as ``localStorage`` holds it (``None``: the key is removed)."""
        if not self.tokens:
            return None
        return json.dumps(dict(sorted(self.tokens.items())))

    def classify(
        self,
        stored: str | None,
        before: str | None = None,
        now_ms: float = 0.0,
        cleared: bool = False,
    ) -> Stored:
        """What ``stored`` (the value ``localStorage`` shows now) is. ``before`` is the value
        it showed just before (a ``storage`` event's ``oldValue``, or what this tab last read),
        when known; ``now_ms`` the clock; ``cleared``: the host cleared all of storage (a
        ``storage`` event with no key), so no value is the host's removal, never lag.

        A value the runtime wrote earlier is stale (storage lags, or a late write landed): the
        record decides. No value while the record holds a session is the host's removal, unless
        the runtime itself removed the value less than :data:`LAG_MS` ago and this tab did not
        see the record's own value go (a sign-in right after a logout, not yet in storage).
        Anything else is the host's."""
        mine = self.stored()
        if stored == mine:
            return Stored.SYNC
        if stored is not None:
            return Stored.STALE if fingerprint(stored) in self.mirrors else Stored.HOST
        if cleared or (before is not None and before == mine):
            return Stored.HOST  # the host cleared storage, or the record's own value went
        return Stored.STALE if 0 <= now_ms - self.emptied < LAG_MS else Stored.HOST

    # -- order ---------------------------------------------------------------------------------
    def accepts(self, version: int, realm: str) -> bool:
        """A token for ``realm`` read at ``version`` may still be used: no logout, and no new
        session or removal of the realm, came after it (the worker's rule)."""
        return version >= self.cleared and version >= self.since.get(realm, 0)

    # -- changes (each advances the version; the adapter commits them in one transaction) -------
    def set_session(
        self, realm: str, token: str, refresh_token: str | None, now_ms: float
    ) -> None:
        """A new session for ``realm`` (``setToken``): its refresh token, if any, is paired
        with ``token``; without one, the realm's previous refresh token goes (it belonged to
        the previous session, maybe another user's)."""
        self.refresh.set(realm, refresh_token, token)
        self.tokens[realm] = token
        self._written(now_ms, began=(realm,))

    def refreshed(
        self,
        realm: str,
        replaced: str | None,
        token: str,
        now_ms: float,
        rotation: tuple[str, str] | None = None,
    ) -> bool:
        """A refresh of ``replaced`` brought ``token`` (and, for the OAuth grant, ``rotation``:
        the refresh token it spent and the one that replaces it). Kept only if the realm still
        holds ``replaced``: after a logout, a removal or a new session (in any tab) it is
        discarded (``False``). The rotated refresh token is paired with ``token`` if the spent
        one was the session's."""
        if replaced is None or self.tokens.get(realm) != replaced:
            return False
        spent, renewed = rotation if rotation is not None else (None, None)
        if renewed is not None and self.refresh.for_session(realm, replaced) != spent:
            renewed = None  # the spent one was not the session's (it changed meanwhile)
        if token == replaced and (renewed is None or renewed == spent):
            return True  # nothing new: a sibling's token, or a server that changed neither
        self.tokens[realm] = token
        if renewed is not None:
            self.refresh.set(realm, renewed, token)
        self._written(now_ms)
        return True

    def adopt_refresh(self, legacy: RefreshTokenMap, now_ms: float) -> bool:
        """Refresh tokens an older bundle kept in ``localStorage``: each one still paired with
        the realm's session, and for which the record has none, moves in."""
        moved = False
        for realm in legacy.realms():
            token = self.tokens.get(realm)
            refresh_token = legacy.for_session(realm, token)
            if token and refresh_token and self.refresh.for_session(realm, token) is None:
                self.refresh.set(realm, refresh_token, token)
                moved = True
        if moved:
            self._written(now_ms)
        return moved

    def refused(self, realm: str, refresh_token: str, now_ms: float) -> bool:
        """The server refused ``refresh_token`` for good (``invalid_grant``): no tab presents
        it again."""
        if self.refresh.for_session(realm, self.tokens.get(realm)) != refresh_token:
            return False
        self.refresh.refused(realm, refresh_token)
        self._written(now_ms)
        return True

    def remove(self, realm: str, now_ms: float) -> None:
        """``removeToken``: the realm's session and its refresh token."""
        self.tokens.pop(realm, None)
        self.refresh.remove(realm)
        self._written(now_ms, began=(realm,))

    def logout(self, now_ms: float) -> None:
        """``clearTokens``: every token and refresh token; nothing read before it counts."""
        self.tokens.clear()
        self.refresh.clear()
        self.since.clear()
        self._written(now_ms)
        self.cleared = self.version

    def after_wipe(self, newest: SessionRecord, now_ms: float) -> bool:
        """This record, as read from the database, is older than ``newest``, one read or
        committed there before: the record was deleted (the host or the browser wiped the
        site's storage, IndexedDB with it). A wipe is a logout, ordered after everything before
        it; the values the runtime wrote stay known as its own (a late copy of one in storage
        is stale, not the host's). Returns whether it was one."""
        if self.version >= newest.version:
            return False
        self.version = newest.version
        self.mirrors = list(dict.fromkeys(newest.mirrors + self.mirrors))[-MAX_MIRRORS:]
        self.logout(now_ms)
        return True

    def ingest(self, tokens: Mapping[str, str], now_ms: float) -> bool:
        """The host wrote the session ``tokens`` (already checked) to storage itself: it
        replaces the record's session. A realm whose token changed or went starts anew (its
        refresh token goes with the old one). Returns whether anything changed."""
        realms = set(self.tokens) | set(tokens)
        changed = [r for r in realms if self.tokens.get(r) != tokens.get(r)]
        if not changed:
            return False
        for realm in changed:
            self.refresh.remove(realm)
        self.tokens = dict(tokens)
        self._written(now_ms, began=changed)
        return True

    def _written(self, now_ms: float, began: Iterable[str] = ()) -> None:
        """A change: the next version; the sessions of ``began`` start (or end) at it."""
        self.version = max(self.version + 1, min(int(now_ms), MAX_VERSION))
        for realm in began:
            self.since[realm] = self.version
        while len(self.since) > MAX_SINCE:  # the oldest mark goes: nothing older counts
            oldest = min(self.since, key=lambda r: self.since[r])
            self.cleared = max(self.cleared, self.since.pop(oldest))
        stored = self.stored()
        if stored is None:
            self.emptied = now_ms
            return
        mark = fingerprint(stored)
        if mark in self.mirrors:
            self.mirrors.remove(mark)
        self.mirrors.append(mark)
        del self.mirrors[:-MAX_MIRRORS]
