"""The app's session in this tab: what this tab holds of the session record, and what changes it.

:class:`Session` implements :class:`~pyauth_web.browser.source.TokenSource` (fetch, SSE,
WebSocket) and :class:`~pyauth_web.browser.worker.AnswerSource`. The session record
(:mod:`pyauth_web.record`, in IndexedDB) is the authority: ``setToken``, ``removeToken``,
``clearTokens`` and refresh results are each one transaction on it (a refresh result is kept
only if the realm still holds the token it replaced), and this tab follows the record it read or
committed (:meth:`Session.follow`): its token store, refresh episodes, timers, the worker and the
host's events. ``localStorage`` is the host's copy: a value the host wrote there is taken into
the record (:mod:`~pyauth_web.browser.following`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from pyauth_web import protocol
from pyauth_web.browser import urls
from pyauth_web.browser.events import Events
from pyauth_web.browser.following import Following
from pyauth_web.browser.proofs import Binding, Proofs
from pyauth_web.browser.records import RecordError, Records
from pyauth_web.browser.refresh_record import RecordedRefresh
from pyauth_web.browser.refreshing import Refreshing
from pyauth_web.browser.storage import SessionStorage
from pyauth_web.browser.timers import RefreshTimers
from pyauth_web.browser.worker import WorkerLink
from pyauth_web.options import Options
from pyauth_web.record import SessionRecord
from pyauth_web.refresh import Reason, RefreshCoordinator, RefreshError
from pyauth_web.tokens import TokenStore


class Session:
    def __init__(
        self, app: str, store: TokenStore, realms: list[str], worker: WorkerLink, events: Events,
        proofs: Proofs | None = None, records: Any = None, record: str | None = None,
    ) -> None:
        self.app = app
        self.store = store
        self.realms = realms  # the configured realms (the worker asks for their origins)
        self.worker = worker
        self.events = events
        self.warn = events.warn
        self.storage = SessionStorage(app)
        self.record = SessionRecord.loads(record)  # as this tab last read or committed it
        self.records = Records(
            app, records, self.storage.write, events.warn, self.now_ms, first=self.record
        )
        self.redirects: dict[str, protocol.Redirect] = {}  # the host's overrides, by realm
        fail = lambda error: self.coordinator.fail(error)  # noqa: E731 - rebuilt by configure
        token = lambda realm: self.record.tokens.get(realm)  # noqa: E731 - as read under the lock
        self.dpop = Binding(store, proofs or Proofs(None, store.clock), fail, token)
        # DPoP (TokenSource, AnswerSource): which tokens are bound, and the headers that send them
        self.uses_dpop = self.dpop.uses_dpop
        self.auth_headers = self.dpop.auth_headers
        self.saw_response = self.dpop.saw_response
        self.dpop_key_ok = self.dpop.key_ok
        self.refreshes = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self.refreshing = Refreshing(
            app, store, events, reread=lambda realm: self.recorded.reread(realm),
            on_success=lambda realm, token: self.recorded.stored(realm, token), spawn=self.spawn,
        )
        self.can_refresh = self.refreshing.can_refresh
        self.refresh = self.refreshing.refresh
        self.timers = RefreshTimers(
            store,
            self.refreshing.rng,
            can_refresh=self.refreshing.can_refresh,
            in_flight=self.refreshing.in_flight,
            start_refresh=self.refreshing.start,
            on_prewarm=lambda realms: events.emit("prewarm", realms=realms),
        )
        self.following = Following(self)
        self.resync = self.following.resync
        self.storage_changed = self.following.storage_changed
        self.caught_up = self.following.caught_up
        self.recorded = RecordedRefresh(
            self.records, self.following, lambda: self.record, self.now_ms,
            self.refreshing.rotation, self._stored_refresh,
        )
        self.session_token = self.recorded.session_token

    def start(self) -> None:
        """Follow the record the loader read (and what the host wrote to storage meanwhile),
        arm the timers and tell the worker."""
        self.following.start()

    def now_ms(self) -> float:
        return self.store.clock() * 1000

    @property
    def version(self) -> int:
        """The version of the record this tab holds (sent with every token it gives out)."""
        return self.record.version

    # -- TokenSource ----------------------------------------------------------------------------
    @property
    def skew(self) -> float:
        return self.store.skew

    def now(self) -> float:
        return self.store.clock()

    def current_token(self, url: str) -> str | None:
        entry = self.store.lookup(url)
        return entry.token if entry else None

    def token_of(self, realm: str) -> str | None:
        entry = self.store.entries().get(realm)
        return entry.token if entry else None

    async def get_token(self, url: Any) -> str | None:
        if self.storage_changed():  # the host wrote storage in this tab: follow it first
            await self.caught_up()
        match = urls.for_matching(url)
        if match is None:
            return None
        entry = self.store.lookup(match)
        if entry is not None:
            return entry.token
        realm = self.store.realm_for(match)
        if realm is None or self.refreshing.refresher is None:
            return None
        await self.refreshing.refresh(realm)
        return self.current_token(match)

    async def force_refresh(self, url: str, stale: str | None) -> str:
        realm = self.store.realm_for(url)
        if realm is None or stale is None or self.refreshing.refresher is None:
            raise RefreshError(url, Reason.NO_TOKEN_TO_REFRESH)
        return await self.coordinator.refresh(realm, stale)

    def redirect_for(self, url: str | None) -> protocol.Redirect:
        realm = self.store.realm_for(url) if url else None
        if realm is None:
            return protocol.Redirect.FOLLOW
        return protocol.redirect_mode(realm, self.redirects)

    def report_auth_error(self, url: str, reason: str) -> None:
        self.events.auth_error(self.store.realm_for(url) or url, reason, None)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- refresh (under the cross-tab lock) -----------------------------------------------------
    @property
    def coordinator(self) -> RefreshCoordinator:
        return self.refreshing.coordinator

    def _stored_refresh(self, record: SessionRecord, realm: str) -> None:
        """A refresh of this tab's is in the record."""
        self.refreshes += 1
        self._took(record, realm, "token-refreshed")
        self.events.refreshed(realm)

    def _took(self, record: SessionRecord, realm: str, kind: str) -> None:
        """This tab's own new token for ``realm`` is in ``record``: follow it, tell the worker,
        plan its refresh, tell the host."""
        self.following.follow(record, mine=frozenset({realm}))
        entry = self.store.entries()[realm]
        self.worker.set_token(entry, self.store.skew, self.redirects, self.uses_dpop(entry), record)
        self.timers.plan(entry)
        self.timers.schedule()
        self.events.emit(kind, realmURL=realm, exp=entry.exp)

    # -- the worker -----------------------------------------------------------------------------
    def sync_worker(self) -> None:
        """Send the app's whole state (as this tab holds it) to the worker."""
        dpop = self.dpop.bound_realms() | self.dpop.realms
        self.worker.sync(self.store, self.realms, self.redirects, dpop, self.record)

    # -- the host's changes ---------------------------------------------------------------------
    async def set_token(self, realm_url: str, token: str, refresh_token: str | None = None) -> None:
        """A new session for the realm. Its refresh token, if any, is stored paired with
        ``token``; without one, the realm's previous refresh token is dropped (it belonged to
        the previous session, maybe another user's)."""
        if refresh_token is not None and self.refreshing.oauth is None:
            raise ValueError("call configure({oauth: ...}) before passing a refresh token")
        if refresh_token is not None and (not isinstance(refresh_token, str) or not refresh_token):
            raise ValueError(f"refreshToken must be a non-empty string, got {refresh_token!r}")
        entry = self.following.scratch().set(realm_url, token)  # checks the realm and the JWT
        now = self.now_ms()
        record, _ = await self.records.change(
            self.record, lambda r: r.set_session(entry.realm, entry.token, refresh_token, now)
        )
        self.coordinator.reset(entry.realm)
        self.dpop.session_changed()
        self._took(record, entry.realm, "token-set")

    async def remove_token(self, realm_url: str) -> None:
        realm = self.store.canonical_realm(realm_url)
        now = self.now_ms()
        record, _ = await self.records.change(self.record, lambda r: r.remove(realm, now))
        self.records.notify(record, logout=False)
        self.coordinator.cancel_all(Reason.LOGGED_OUT)
        self.coordinator.reset(realm)
        self.following.follow(record, mine=frozenset({realm}))
        self.timers.forget(realm)
        self.worker.remove_token(realm, record.version)
        self.events.emit("token-removed", realmURL=realm)

    async def clear_tokens(self) -> None:
        """Log out: every token and refresh token in the record (this commit orders it before
        anything any tab writes after it), every tab and worker told, the app's DPoP key
        deleted."""
        now = self.now_ms()
        try:
            record, _ = await self.records.change(self.record, lambda r: r.logout(now))
        except RecordError as exc:  # out all the same: this tab, its storage, the workers
            self.warn(f"{exc}; logging out in this tab and the workers all the same")
            record = SessionRecord.loads(self.record.dumps())
            record.logout(now)
            self.storage.write(None)
        self.storage.drop_legacy_refresh()
        self.records.notify(record, logout=True)
        self.coordinator.clear()
        self.following.follow(record, mine=frozenset(self.store.entries()))
        self.timers.forget()
        self.timers.schedule()
        self.worker.clear(record.version)
        self.events.emit("tokens-cleared")
        await self.dpop.logged_out()

    def apply(self, options: Options) -> None:
        """``configure()``: options already checked (:func:`pyauth_web.options.parse_options`),
        so nothing here can fail half-way."""
        if options.redirects is not None:
            self.redirects = options.redirects
        if options.dpop is not None:
            self.dpop.realms = options.dpop
        if options.skew is not None:
            self.store.skew = options.skew
        if options.jitter is not None:
            self.timers.jitter = options.jitter
        self.refreshing.configure(options, self.recorded, self.session_token, proofs=self.dpop)
        self.timers.forget()  # skew or jitter may have changed
        self.timers.plan_all()
        self.timers.schedule()
        self.sync_worker()
