"""The app's session record in IndexedDB (the rules are the core's
:class:`pyauth_web.record.SessionRecord`): read it, change it in one transaction, and tell the
app's other tabs and the service worker that a session ended.

The loader's ``records`` store (``web/pyauth-web.js``) does the IndexedDB part: ``read()``
resolves with the record's JSON text (or ``null``), ``update(fn)`` runs ``fn(text)`` inside a
read-write transaction, synchronously, and stores the text it returns (``null``: no change).
Everything a change writes to ``localStorage`` (the mirror of the session) is written inside
that transaction, so the mirror writes of all tabs follow the record's order.

Without IndexedDB (storage blocked: the database cannot be opened) the tab keeps the record in
memory and still writes the mirror: tabs then order nothing between them (as before the record
existed), and one warning says so. A single transaction that fails changes nothing
(:class:`RecordError`).

Versions never go back: a record the database holds that is older than the newest this tab read
or committed there was deleted (the host or the browser wiped the site's storage). Every
transaction that finds one commits a logout after it first (:meth:`SessionRecord.after_wipe`)
and tells the other tabs and the worker. Only records read from the database count, never this
tab's own copy, a notice, or the record kept in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import js
from pyodide.ffi import JsException, create_proxy

from pyauth_web import protocol
from pyauth_web.browser.events import plain
from pyauth_web.record import SessionRecord

T = TypeVar("T")
UNAVAILABLE = "SessionRecordUnavailable"  # the loader's error name: the database cannot be opened


class RecordError(RuntimeError):
    """A transaction on the session record failed (nothing changed)."""


class Records:
    def __init__(
        self,
        app: str,
        store: Any,
        write_mirror: Callable[[str | None], None],
        warn: Callable[[str], None],
        now_ms: Callable[[], float],
        first: SessionRecord,
    ) -> None:
        self.app = app
        self._store = store  # the loader's records store (None: no IndexedDB)
        self._write_mirror = write_mirror  # sets localStorage to the record's mirror if it differs
        self._warn = warn
        self._now_ms = now_ms
        self._local: SessionRecord | None = None  # the record, when IndexedDB failed
        self._newest = first  # the newest record read from or committed to the database
        self._channel = js.BroadcastChannel.new(protocol.RECORD_CHANNEL)

    def _saw(self, record: SessionRecord) -> None:
        if record.version >= self._newest.version:
            self._newest = record

    def behind(self, record: SessionRecord) -> bool:
        """Whether ``record``, read from the database, is older than the newest this tab saw
        there: the record was deleted since (the next transaction logs out after it)."""
        durable = self._local is None and self._store is not None
        return durable and record.version < self._newest.version

    def _unavailable(self, exc: JsException, cached: SessionRecord) -> bool:
        """The database cannot be opened at all (storage blocked): from now on this tab keeps
        the record in memory (warned once). Any other failure is one transaction's."""
        if getattr(exc, "name", None) != UNAVAILABLE:
            return False
        if self._local is None:
            self._warn(
                f"the session record (IndexedDB) is unavailable ({exc}); "
                "tabs of this app no longer order logouts and refreshes between them"
            )
            self._local = cached
        return True

    async def read(self, cached: SessionRecord) -> SessionRecord:
        """The record as committed now; ``cached`` (this tab's copy) when it cannot be read."""
        if self._local is None and self._store is not None:
            try:
                record = SessionRecord.loads(await self._store.read())
            except JsException as exc:
                if not self._unavailable(exc, cached):
                    return cached
            else:
                self._saw(record)
                return record
        return self._local if self._local is not None else cached

    async def change(
        self, cached: SessionRecord, fn: Callable[[SessionRecord], T]
    ) -> tuple[SessionRecord, T]:
        """Run ``fn`` on the record as committed, in one transaction; store what it changed,
        and leave ``localStorage`` holding the result's mirror. Returns the record as committed
        and ``fn``'s result; raises :class:`RecordError` when the transaction failed (nothing
        changed). ``fn`` changes only the record it is given."""
        out: list[tuple[SessionRecord, T]] = []
        errors: list[Exception] = []
        wiped: list[bool] = []

        def in_transaction(text: Any) -> str | None:
            try:
                record = SessionRecord.loads(text)
                before = record.version
                wiped.append(record.after_wipe(self._newest, self._now_ms()))
                out.append((record, fn(record)))
            except Exception as exc:  # noqa: BLE001 - re-raised once the transaction ended
                errors.append(exc)
                return None
            self._mirror(record)
            return record.dumps() if record.version != before else None

        if self._local is None and self._store is not None:
            callback = create_proxy(in_transaction)
            try:
                await self._store.update(callback)
                if errors:
                    raise errors[0]
                record, result = out[-1]
                self._saw(record)
                if wiped[-1]:
                    self.notify(record, logout=True)
                return record, result
            except JsException as exc:
                if not self._unavailable(exc, cached):
                    raise RecordError(f"the session record could not be changed: {exc}") from exc
            finally:
                callback.destroy()
        record = SessionRecord.loads((self._local or cached).dumps())
        result = fn(record)
        self._mirror(record)
        self._local = record
        return record, result

    def _mirror(self, record: SessionRecord) -> None:
        try:
            self._write_mirror(record.stored())
        except JsException as exc:  # storage full or blocked: the record decides all the same
            self._warn(f"could not write the session to localStorage: {exc}")

    def notify(self, record: SessionRecord, logout: bool) -> None:
        """Tell the app's other tabs and the service worker (which cannot hear ``storage``
        events) that a session ended: they read the record again (after a logout, they drop
        everything they hold at once)."""
        self._channel.postMessage(plain(protocol.record_notice(self.app, record.version, logout)))

    def wiped(self, record: SessionRecord) -> SessionRecord:
        """``record`` (read from the database, :meth:`behind`) when no transaction could
        commit the logout it calls for: the logout, kept by this tab and told to the others."""
        record = SessionRecord.loads(record.dumps())
        if record.after_wipe(self._newest, self._now_ms()):
            self._mirror(record)
            self.notify(record, logout=True)
        return record

    def on_deleted(self, callback: Callable[[], None]) -> None:
        """``callback()`` when the database is deleted while this tab has it open."""
        if self._store is not None:
            self._store.onDeleted(create_proxy(callback))

    def listen(self, on_notice: Callable[[int, bool], None]) -> None:
        """``on_notice(version, logout)`` for each of this app's notices from another tab."""

        def on_message(event: Any) -> None:
            try:
                notice = protocol.parse_record_notice(event.data.to_py(), self.app)
            except Exception:  # noqa: BLE001 - foreign message shapes are ignored
                return
            if notice is not None:
                on_notice(*notice)

        self._channel.addEventListener("message", create_proxy(on_message))
