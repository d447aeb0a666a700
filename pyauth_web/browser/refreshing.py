"""The refresh side of the session: the configured refresher, the refresh coordinator (made
anew by ``configure``), and the cross-tab relay of failure episodes.

Single-flight, retries, deadlines, the cross-tab lock and logout are the core's
(:class:`pyauth_web.refresh.RefreshCoordinator`); this module binds it to the browser: Web
Locks named per app and realm, the three refreshers, and ``console:auth-error`` once per
episode in every tab.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Coroutine
from typing import Any

from pyauth_web import protocol
from pyauth_web.browser.events import AuthErrorRelay, Events
from pyauth_web.browser.locks import web_lock
from pyauth_web.browser.refreshers import (
    OAuthRefresher,
    RefreshTokens,
    TokenRequestProofs,
    callback_refresher,
    url_refresher,
)
from pyauth_web.options import Options
from pyauth_web.refresh import (
    DEFAULT_LOCK_TIMEOUT,
    DEFAULT_REFRESH_TIMEOUT,
    BackoffPolicy,
    OnSuccess,
    Reason,
    RefreshCoordinator,
    Refresher,
    RefreshError,
    Reread,
)
from pyauth_web.tokens import TokenStore


class Refreshing:
    def __init__(
        self,
        app: str,
        store: TokenStore,
        events: Events,
        *,
        reread: Reread,
        on_success: OnSuccess,
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
    ) -> None:
        self.app = app
        self.store = store
        self.events = events
        self.rng = random.Random()
        self._reread = reread
        self._on_success = on_success
        self._spawn = spawn
        self.refresher: Refresher | None = None
        self.oauth: OAuthRefresher | None = None
        self.coordinator = self._coordinator(None, BackoffPolicy())
        self.relay = AuthErrorRelay(app, self._relayed)

    def can_refresh(self, realm: str) -> bool:
        return self.refresher is not None and self.coordinator.failed(realm) is None

    def in_flight(self, realm: str) -> bool:
        return self.coordinator.in_flight(realm)

    def token_of(self, realm: str) -> str | None:
        entry = self.store.entries().get(realm)
        return entry.token if entry else None

    async def refresh(self, realm: str, stale: str | None = None) -> str:
        """Refresh ``realm``'s token ``stale`` (default: the one held now). Pass the token seen
        when the refresh was decided: if a sibling replaced it meanwhile, that one is used."""
        return await self.coordinator.refresh(realm, stale or self.token_of(realm))

    def start(self, realm: str) -> None:
        """A proactive refresh (timer or pre-warm); failures are reported by the coordinator."""
        if self.can_refresh(realm):
            self._spawn(self._quietly(realm, self.token_of(realm)))

    async def _quietly(self, realm: str, stale: str | None) -> None:
        try:
            await self.refresh(realm, stale)
        except RefreshError:
            pass  # reported once through console:auth-error

    def rotation(self, token: str) -> tuple[str, str] | None:
        """The refresh token spent and the rotated one that came with ``token`` (OAuth only)."""
        return None if self.oauth is None else self.oauth.rotation(token)

    def configure(
        self,
        options: Options,
        refresh_tokens: RefreshTokens,
        session_token: Callable[[str], str | None],
        proofs: TokenRequestProofs | None = None,
    ) -> None:
        """Apply checked options: the refresher (options without one keep the current one) and
        a new coordinator (in-flight refreshes of the old one end as ``reconfigured``). A realm
        whose refresh failed stays failed until a new token is set: a reconfigure is not one,
        unless it brings the refresher that episode lacked (``no refresher configured``)."""
        refresher = self.refresher
        if options.refresh is not None:
            refresher = callback_refresher(options.refresh)
        elif options.refresh_url is not None:
            refresher = url_refresher(options.refresh_url)
        elif options.oauth is not None:
            o = options.oauth
            oauth_refresher = OAuthRefresher(
                o.token_endpoint, o.client_id, refresh_tokens, session_token, o.scope, proofs
            )
            if self.oauth is not None:  # never resend what this tab already spent
                oauth_refresher.grant.carry_over(self.oauth.grant)
            refresher = self.oauth = oauth_refresher
        old = self.coordinator
        old.cancel_all(Reason.RECONFIGURED)
        self.coordinator = self._coordinator(
            refresher,
            options.backoff or old.backoff,
            options.refresh_timeout or old.refresh_timeout,
            options.lock_timeout or old.lock_timeout,
        )
        self.coordinator.carry_failures(
            old, keep=lambda err: refresher is None or err.reason != Reason.NO_REFRESHER
        )
        self.refresher = refresher

    def _coordinator(
        self,
        refresher: Refresher | None,
        backoff: BackoffPolicy,
        refresh_timeout: float = DEFAULT_REFRESH_TIMEOUT,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    ) -> RefreshCoordinator:
        async def no_refresher(realm: str) -> str:
            raise RefreshError(realm, Reason.NO_REFRESHER)

        return RefreshCoordinator(
            refresher or no_refresher,
            clock=self.store.clock,
            rng=self.rng,
            backoff=backoff,
            lock=lambda realm: web_lock(protocol.lock_name(self.app, realm)),
            reread=self._reread,
            skew=self.store.skew,  # configure() makes a new coordinator when skew changes
            on_success=self._on_success,
            on_failure=self._failed,
            refresh_timeout=refresh_timeout,
            lock_timeout=lock_timeout,
        )

    def _failed(self, error: RefreshError) -> None:
        """One failure episode: tell the host once, and the other tabs once."""
        detail = self.events.auth_error(error.realm, error.reason, error.status)
        if not getattr(error, "relayed", False):
            self.relay.post(detail)

    def _relayed(self, realm: str, reason: str, status: int | None) -> None:
        """Another tab's episode for a realm this tab holds: the same episode here."""
        if realm not in self.store.entries():
            return
        error = RefreshError(realm, reason, status=status)
        error.relayed = True
        self.coordinator.fail(error)
