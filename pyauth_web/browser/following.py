"""How a tab follows the session record, and takes the host's own ``localStorage`` writes into it.

A tab reads the record again when something says it changed: a ``storage`` event (another tab
wrote the mirror, or the host wrote storage), a notice on the record channel (another tab
logged out or removed a realm), a change of storage in this tab itself (the host wrote it here:
no event fires), and under the refresh lock. What storage shows is judged against the record
(:meth:`pyauth_web.record.SessionRecord.classify`): the host's own value is taken into the
record in one transaction (so it too is ordered with every other change); a value the runtime
wrote earlier (storage lagging, or a write that landed late) is rewritten from the record, never
followed.

Following a record means: this tab's token store holds its tokens, refreshes of realms whose
session ended are cancelled, a realm with a new token starts a new refresh episode (and the host
hears ``pyauth-web:token-refreshed``), the timers are planned again and the worker is told.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Protocol

from pyauth_web.browser.events import Events
from pyauth_web.browser.proofs import Binding
from pyauth_web.browser.records import RecordError, Records
from pyauth_web.browser.storage import SessionStorage
from pyauth_web.browser.timers import RefreshTimers
from pyauth_web.record import SessionRecord, Stored
from pyauth_web.refresh import Reason, RefreshCoordinator
from pyauth_web.tokens import TokenStore


class Holder(Protocol):
    """What a tab holds of the session (the session, :mod:`pyauth_web.browser.session`)."""

    store: TokenStore
    record: SessionRecord
    storage: SessionStorage
    records: Records
    timers: RefreshTimers
    dpop: Binding
    events: Events

    @property
    def coordinator(self) -> RefreshCoordinator: ...
    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None: ...
    def warn(self, message: str) -> None: ...
    def now_ms(self) -> float: ...
    def sync_worker(self) -> None: ...


class Following:
    def __init__(self, session: Holder) -> None:
        self.s = session
        self._lock = asyncio.Lock()  # one read of the record at a time, in order
        self._reported: str | None = None  # the stored value whose bad entries were warned about
        self._catching_up: asyncio.Future[SessionRecord] | None = None  # after a storage change

    def start(self) -> None:
        s = self.s
        s.storage.on_change(
            lambda before, cleared: s.spawn(self.resync(before, announce=True, cleared=cleared))
        )
        s.records.listen(self._notice)
        s.records.on_deleted(lambda: s.spawn(self.resync()))  # (a wipe: see records.py)
        s.timers.listen(self.storage_changed)  # (the host may have written storage here)
        raw = s.storage.read_raw()
        kind = s.record.classify(raw, None, s.now_ms())
        s.store.loads(s.record.stored())
        if kind is Stored.HOST:  # written while no tab ran: followed now, recorded next
            s.store.loads(self._tokens_json(raw))
        s.storage.seen = raw
        s.timers.plan_all()
        s.timers.schedule()
        s.sync_worker()
        if kind is not Stored.SYNC or s.storage.has_legacy_refresh():
            s.spawn(self.resync())

    def scratch(self) -> TokenStore:
        """An empty store with this tab's rules (canonical realms, JWT checks)."""
        store = self.s.store
        return TokenStore(clock=store.clock, skew=store.skew, canonical=store.canonical_realm)

    def _parse(self, raw: str | None) -> dict[str, str]:
        """The session the host wrote (bad entries dropped, and warned about once)."""
        scratch = self.scratch()
        problems = scratch.loads(raw)
        if problems and raw != self._reported:
            self._reported = raw
            self.s.warn("; ".join(problems))
        return {realm: entry.token for realm, entry in scratch.entries().items()}

    def _tokens_json(self, raw: str | None) -> str | None:
        tokens = self._parse(raw)
        return SessionRecord(tokens=tokens).stored()

    def storage_changed(self) -> bool:
        """Whether storage holds something else than the session this tab follows (the host
        wrote it in this tab; or another tab did, and its event has yet to come); if so, one
        read of the record is under way (:meth:`caught_up`), shared by every caller."""
        s = self.s
        if not s.storage.changed():
            return False
        if self._catching_up is None or self._catching_up.done():
            self._catching_up = asyncio.ensure_future(self.resync(s.storage.seen, announce=True))
        return True

    async def caught_up(self) -> None:
        """The read of the record a change of storage started has ended."""
        if self._catching_up is not None:
            await asyncio.shield(self._catching_up)

    def reread(self) -> Coroutine[Any, Any, SessionRecord]:
        """Read the record now (what storage shows judged against what this tab last saw)."""
        return self.resync(self.s.storage.seen)

    async def resync(
        self, before: str | None = None, announce: bool = False, cleared: bool = False
    ) -> SessionRecord:
        """Read the record (taking in what the host wrote to storage, or rewriting a stale
        value) and follow it. ``before``: what storage showed before the change that brought
        this call, when known; ``cleared``: the host cleared all storage (see
        ``SessionRecord.classify``)."""
        s = self.s
        async with self._lock:
            raw = s.storage.read_raw()
            record = await s.records.read(s.record)
            wiped = s.records.behind(record)  # deleted since: the transaction logs out first
            stale = record.classify(raw, before, s.now_ms(), cleared) is not Stored.SYNC
            if wiped or stale or s.storage.has_legacy_refresh():
                reconcile = lambda r: self._reconcile(r, before, cleared)  # noqa: E731
                try:
                    record, _ = await s.records.change(s.record, reconcile)
                except RecordError as exc:  # nothing taken in: follow the record as read
                    s.warn(str(exc))
                    if wiped:  # (never a session the database no longer holds)
                        record = s.records.wiped(record)
            self.follow(record)
            if announce:
                s.events.emit("storage-sync", realms=list(s.store.entries()))
            return record

    def _reconcile(self, record: SessionRecord, before: str | None, cleared: bool) -> Stored:
        """In the record's transaction: the refresh tokens an older bundle left in storage move
        in; the host's own value is taken in (the caller writes the mirror back either way)."""
        s = self.s
        now = s.now_ms()
        raw = s.storage.read_raw()
        kind = record.classify(raw, before, now, cleared)
        if kind is Stored.HOST:
            record.ingest(self._parse(raw), now)
        legacy = s.storage.take_legacy_refresh()  # (after: an older bundle's sign-in pairs them
        if legacy is not None:  # with the session it just wrote)
            record.adopt_refresh(legacy, now)
        return kind

    def _notice(self, version: int, logout: bool) -> None:
        """Another tab ended a session (its record ``version``): after a logout, drop everything
        at once; then read the record."""
        s = self.s
        if version <= s.record.version:
            return
        if logout:  # (what the runtime wrote stays known as its own)
            mirrors = list(s.record.mirrors)
            self.follow(SessionRecord(version=version, cleared=version, mirrors=mirrors))
        s.spawn(self.resync())

    def follow(self, record: SessionRecord, mine: frozenset[str] = frozenset()) -> None:
        """This tab now holds ``record``. ``mine``: realms whose change is this tab's own (the
        caller tells the worker and the host about them)."""
        s = self.s
        before = s.store.entries()
        s.record = record
        s.store.loads(record.stored())
        s.storage.seen = record.stored()  # storage holding anything else is a change to look at
        after = s.store.entries()
        changed = {r for r in before.keys() | after.keys() if before.get(r) != after.get(r)}
        if not changed:
            return
        if any(realm not in after and realm not in mine for realm in before):
            s.coordinator.cancel_all(Reason.LOGGED_OUT)  # a logout or removal elsewhere
        s.dpop.session_changed()  # a logout deletes the DPoP key, a sign-in may make a new one
        for realm in changed - mine:
            if realm in after:
                s.coordinator.reset(realm)
                if realm in before:  # a newer token for a realm we had: hosts may refetch
                    s.events.refreshed(realm)
        s.timers.plan_all()
        s.timers.schedule()
        if changed - mine:
            s.sync_worker()
