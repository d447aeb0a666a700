"""The cross-tab hand-off of a refresh: which token a refresh replaced, kept in Cache Storage.

``localStorage`` is not consistent across tabs in Chromium: a write reaches the other tabs'
copies asynchronously, and may arrive after the writer has released the Web Lock. A tab that
takes the lock next could then still read the token its predecessor just replaced and refresh
it a second time (seen in CI: two refreshes for five tabs across one expiry). Cache Storage is
consistent across tabs (one store, and ``put`` resolves once the entry is stored), so the
refreshing tab records there, before it releases the lock, a fingerprint of the token it
replaced. The next holder that still reads that token knows its copy lags, and waits (bounded)
for the ``storage`` event that carries the new one.

Only a SHA-256 fingerprint of a token that is no longer in use is stored, never a token (it is
left in place at logout: it names nothing that still works). Without
Cache Storage (an insecure context) both calls do nothing: tabs then may refresh twice, as
before, never less safely.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import js
from pyodide.ffi import JsException

from pyauth_web import protocol

WAIT = 2.0
"""Seconds a tab that finds its stored token replaced waits for the storage event bringing the
new one (the lag seen is tens of milliseconds), and the bound on each Cache Storage call."""


def fingerprint(app: str, realm: str, token: str) -> str:
    return hashlib.sha256(f"{app}\n{realm}\n{token}".encode()).hexdigest()


class Handoff:
    def __init__(self, app: str) -> None:
        self.app = app

    def _key(self, realm: str) -> str:
        name = hashlib.sha256(f"{self.app}\n{realm}".encode()).hexdigest()
        return f"{js.location.origin}/.pyauth-web/handoff/{name}"

    async def _cache(self) -> Any:
        caches = getattr(js, "caches", None)
        return None if caches is None else await caches.open(protocol.HANDOFF_CACHE)

    async def replaced(self, realm: str, token: str) -> None:
        """Record that a refresh replaced ``token`` (await it before releasing the lock)."""
        try:
            async with asyncio.timeout(WAIT):
                cache = await self._cache()
                if cache is not None:
                    body = fingerprint(self.app, realm, token)
                    await cache.put(self._key(realm), js.Response.new(body))
        except (JsException, TimeoutError):
            pass  # storage full or refused: the next holder may refresh once more

    async def was_replaced(self, realm: str, token: str) -> bool:
        """A refresh in another tab replaced ``token`` (this tab's storage has yet to show it)."""
        try:
            async with asyncio.timeout(WAIT):
                cache = await self._cache()
                found = None if cache is None else await cache.match(self._key(realm))
                recorded = None if found is None else await found.text()
        except (JsException, TimeoutError):
            return False
        return recorded == fingerprint(self.app, realm, token)
