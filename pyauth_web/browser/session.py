"""The app's session in this tab: the token store, its refresh, and what changes it.

:class:`Session` implements :class:`~pyauth_web.browser.source.TokenSource` (fetch, SSE,
WebSocket) and :class:`~pyauth_web.browser.worker.AnswerSource`; it carries out ``setToken``,
``removeToken``, ``clearTokens``, storage changes and ``configure``, and tells storage, the
worker, the timers and the host. Storage is the truth: it re-reads before it answers."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from pyauth_web import protocol
from pyauth_web.browser import handoff, urls
from pyauth_web.browser.events import Events
from pyauth_web.browser.proofs import Binding, Proofs
from pyauth_web.browser.refreshing import Refreshing
from pyauth_web.browser.storage import SessionStorage
from pyauth_web.browser.timers import RefreshTimers
from pyauth_web.browser.worker import WorkerLink
from pyauth_web.options import Options
from pyauth_web.refresh import Reason, RefreshCoordinator, RefreshError
from pyauth_web.tokens import TokenStore


class Session:
    def __init__(
        self, app: str, store: TokenStore, realms: list[str], worker: WorkerLink, events: Events,
        proofs: Proofs | None = None,
    ) -> None:
        self.app = app
        self.store = store
        self.realms = realms  # the configured realms (the worker asks for their origins)
        self.worker = worker
        self.events = events
        lag = lambda realm: events.emit("storage-lag", realmURL=realm)  # noqa: E731
        self.storage = SessionStorage(app, store, events.warn, handoff.Handoff(app), lag)
        self.redirects: dict[str, protocol.Redirect] = {}  # the host's overrides, by realm
        fail = lambda error: self.coordinator.fail(error)  # noqa: E731 - rebuilt by configure
        self.dpop = Binding(store, proofs or Proofs(None, store.clock), fail, self.session_token)
        # DPoP (TokenSource, AnswerSource): which tokens are bound, and the headers that send them
        self.uses_dpop = self.dpop.uses_dpop
        self.auth_headers = self.dpop.auth_headers
        self.saw_response = self.dpop.saw_response
        self.dpop_key_ok = self.dpop.key_ok
        self.refreshes = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self.refreshing = Refreshing(
            app, store, events, reread=self._reread, on_success=self._refreshed, spawn=self.spawn
        )
        self.warn = events.warn
        self.token_of = self.storage.token
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

    def start(self) -> None:
        """Load the stored session, arm the timers and tell the worker."""
        self.storage.on_change(self.storage_changed)
        self.timers.listen(self.follow_storage)
        self.storage.load(report=True)
        self.timers.plan_all()
        self.timers.schedule()
        self.sync_worker()

    # -- TokenSource ----------------------------------------------------------------------------
    @property
    def skew(self) -> float:
        return self.store.skew

    def now(self) -> float:
        return self.store.clock()

    def current_token(self, url: str) -> str | None:
        entry = self.store.lookup(url)
        return entry.token if entry else None

    async def get_token(self, url: Any) -> str | None:
        self.follow_storage()
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

    # -- refresh ------------------------------------------------------------------------------
    @property
    def coordinator(self) -> RefreshCoordinator:
        return self.refreshing.coordinator

    async def _reread(self, realm: str) -> str | None:  # under the lock; awaits a sibling's
        token = await self.storage.reread(realm)
        self.timers.plan_all()
        return token

    def session_token(self, realm: str) -> str | None:
        """The realm's stored access token now (OAuth pairs refresh tokens with it)."""
        self._load()
        return self.token_of(realm)

    def _refreshed(self, realm: str, token: str) -> Coroutine[Any, Any, None] | None:
        """Store a refreshed token (under the cross-tab lock, held until the hand-off ends)."""
        self._load()
        if realm not in self.store.entries():  # logged out in another tab meanwhile
            raise RefreshError(realm, Reason.LOGGED_OUT)
        replaced = self.token_of(realm)
        entry = self.store.set(realm, token)
        self.storage.persist()
        self.refreshes += 1
        self.worker.set_token(entry, self.store.skew, self.redirects, self.uses_dpop(entry))
        self.timers.plan(entry)
        self.timers.schedule()
        self.events.emit("token-refreshed", realmURL=realm, exp=entry.exp)
        self.events.refreshed(realm)
        if replaced is None or replaced == token:  # a sibling's token: nothing replaced
            return None
        return self.storage.handoff.replaced(realm, replaced)

    # -- changes ------------------------------------------------------------------------------
    def _load(self) -> None:
        self.storage.load()
        self.timers.plan_all()

    def follow_storage(self) -> None:
        """Notice a write the host made in this tab (no ``storage`` event fires there)."""
        if self.storage.changed():
            self.storage_changed()

    def storage_changed(self) -> None:
        """The stored session changed outside this runtime (the host, another tab): follow it
        and tell the worker (which applies a sync only when it changes the app's state)."""
        before = self.store.entries()
        self._load()
        after = self.store.entries()
        # A session the host removed takes its refresh token with it (a replaced one keeps its
        # entry, unused: the pairing refuses it; only a refresh under the lock rewrites one).
        self.storage.refresh_tokens().keep_only(set(after))
        if any(realm not in after for realm in before):  # logout or removal in another tab
            self.coordinator.cancel_all(Reason.LOGGED_OUT)
        if before != after:  # a logout deletes the DPoP key, a sign-in may make a new one
            self.dpop.session_changed()
        for realm, entry in after.items():
            if before.get(realm) != entry:
                self.coordinator.reset(realm)
                if realm in before:  # a newer token for a realm we had: hosts may refetch
                    self.events.refreshed(realm)
        self.timers.schedule()
        self.sync_worker()
        self.events.emit("storage-sync", realms=list(after))

    def sync_worker(self) -> None:
        """Send the app's whole state (as stored now) to the worker."""
        if self.storage.changed():
            self._load()
        self.worker.sync(self.store, self.realms, self.redirects, self.dpop.bound_realms())

    def set_token(self, realm_url: str, token: str, refresh_token: str | None = None) -> None:
        """A new session for the realm. Its refresh token, if any, is stored paired with
        ``token``; without one, the realm's previous refresh token is dropped (it belonged to
        the previous session, maybe another user's)."""
        if refresh_token is not None and self.refreshing.oauth is None:
            raise ValueError("call configure({oauth: ...}) before passing a refresh token")
        if refresh_token is not None and (not isinstance(refresh_token, str) or not refresh_token):
            raise ValueError(f"refreshToken must be a non-empty string, got {refresh_token!r}")
        entry = self.store.set(realm_url, token)
        self.coordinator.reset(entry.realm)
        self.dpop.session_changed()
        self.storage.persist()
        self.storage.refresh_tokens().set(entry.realm, refresh_token, entry.token)
        self.worker.set_token(entry, self.store.skew, self.redirects, self.uses_dpop(entry))
        self.timers.plan(entry)
        self.timers.schedule()
        self.events.emit("token-set", realmURL=entry.realm, exp=entry.exp)

    def remove_token(self, realm_url: str) -> None:
        realm = self.store.canonical_realm(realm_url)
        self.store.remove(realm)
        self.coordinator.cancel_all(Reason.LOGGED_OUT)
        self.coordinator.reset(realm)
        self.storage.persist()
        self.storage.refresh_tokens().remove(realm)  # every credential of the realm, any tab
        self.timers.forget(realm)
        self.worker.remove_token(realm)
        self.events.emit("token-removed", realmURL=realm)

    def clear_tokens(self) -> Coroutine[Any, Any, None]:
        """Log out; returns the deletion of the app's DPoP key, for the caller to await."""
        self.store.clear()
        self.coordinator.clear()
        self.storage.persist()
        self.storage.refresh_tokens().clear()  # every refresh token, whatever this tab set up
        self.timers.forget()
        self.timers.schedule()
        self.worker.clear()
        self.events.emit("tokens-cleared")
        return self.dpop.logged_out()

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
        self.refreshing.configure(
            options, self.storage.refresh_tokens(), self.session_token, proofs=self.dpop
        )
        self.timers.forget()  # skew or jitter may have changed
        self.timers.plan_all()
        self.timers.schedule()
        self.sync_worker()
