"""What a refresh reads and writes in the app's session record, under the cross-tab lock.

The refresh coordinator (:class:`pyauth_web.refresh.RefreshCoordinator`) holds the realm's Web
Lock for each attempt and calls :meth:`RecordedRefresh.reread` first: the realm's token in the
record now, so a sibling's refresh is taken at once (the record is consistent across tabs;
``localStorage`` is not), and a realm the record no longer holds ends the refresh. Its result
goes to :meth:`RecordedRefresh.stored` (the coordinator's ``on_success``, still under the lock):
one transaction keeps it only if the realm still holds the token it replaced
(:meth:`pyauth_web.record.SessionRecord.refreshed`), so a logout, a removal or a new sign-in
committed first, in any tab, wins. The OAuth refresher reads its refresh tokens here too
(:class:`~pyauth_web.browser.refreshers.RefreshTokens`).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from pyauth_web.browser.following import Following
from pyauth_web.browser.records import RecordError, Records
from pyauth_web.oauth import RefreshTokenMap
from pyauth_web.record import SessionRecord
from pyauth_web.refresh import Reason, RefreshError


class RecordedRefresh:
    def __init__(
        self,
        records: Records,
        following: Following,
        record: Callable[[], SessionRecord],
        now_ms: Callable[[], float],
        rotation: Callable[[str], tuple[str, str] | None],
        on_stored: Callable[[SessionRecord, str], None],
    ) -> None:
        self._records = records
        self._following = following
        self._record = record  # the record as this tab last read or committed it
        self._now_ms = now_ms
        self._rotation = rotation  # the OAuth refresher's: refresh token spent, rotated one
        self._on_stored = on_stored  # the session follows a refresh it stored, and tells
        self._basis: dict[str, str] = {}  # realm -> the token the refresh under the lock replaces

    async def reread(self, realm: str) -> str | None:
        """The realm's token in the record now; raises "logged out" when it holds none."""
        record = await self._following.reread()
        token = record.tokens.get(realm)
        if token is None:
            raise RefreshError(realm, Reason.LOGGED_OUT, description="the session ended")
        self._basis[realm] = token
        return token

    def session_token(self, realm: str) -> str | None:
        """The realm's access token, as read under the lock (refresh tokens pair with it)."""
        return self._record().tokens.get(realm)

    def refresh_tokens(self) -> RefreshTokenMap:
        """A copy of the refresh tokens, as read under the lock."""
        return RefreshTokenMap.loads(self._record().refresh.dumps())

    def stored(self, realm: str, token: str) -> Coroutine[Any, Any, None] | None:
        replaced = self._basis.pop(realm, None)
        rotation = self._rotation(token)
        if token == replaced and rotation is None:  # a sibling's refresh, in the record already
            return None
        return self._store(realm, replaced, token, rotation)

    async def _store(
        self, realm: str, replaced: str | None, token: str, rotation: tuple[str, str] | None
    ) -> None:
        now = self._now_ms()
        record, kept = await self._records.change(
            self._record(), lambda r: r.refreshed(realm, replaced, token, now, rotation)
        )
        if not kept:  # a logout, a removal or a new session came first, in some tab
            self._following.follow(record)
            raise RefreshError(realm, Reason.LOGGED_OUT, description="the session changed")
        self._on_stored(record, realm)

    async def refused(self, realm: str, refresh_token: str) -> None:
        """The server refused ``refresh_token`` for good: no tab presents it again."""
        now = self._now_ms()
        try:
            record, _ = await self._records.change(
                self._record(), lambda r: r.refused(realm, refresh_token, now)
            )
        except RecordError:
            return  # (the grant is dead anyway: a tab presenting it again is refused again)
        self._following.follow(record)
