"""The service worker's side of the runtime: what the page tells it, and the token-answer
handler (the hot path: a worker's ``request-realm-token`` on a cache miss).

Messages are built by the core (:mod:`pyauth_web.protocol`); the loader adds ``app`` and posts
them to every worker of the registration.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from typing import Any, Protocol

from pyodide.ffi import JsProxy

from pyauth_web import protocol
from pyauth_web.browser.events import plain
from pyauth_web.refresh import RefreshError
from pyauth_web.tokens import TokenEntry, TokenStore


class WorkerLink:
    """Posts the app's state changes to the worker (``post`` is the loader's ``postToWorker``)."""

    def __init__(self, post: Callable[[Any], Any]) -> None:
        self._post = post

    def sync(
        self,
        store: TokenStore,
        realms: list[str],
        redirects: Mapping[str, protocol.Redirect],
        dpop: Iterable[str],
        order: protocol.Order,
    ) -> None:
        self._post(plain(protocol.sync_tokens(store, realms, redirects, dpop, order)))

    def set_token(
        self,
        entry: TokenEntry,
        skew: float,
        redirects: Mapping[str, protocol.Redirect],
        dpop: bool,
        order: protocol.Order,
    ) -> None:
        self._post(plain(protocol.set_realm_token(entry, skew, redirects, dpop, order)))

    def remove_token(self, realm: str, version: int) -> None:
        self._post(plain(protocol.remove_realm_token(realm, version)))

    def clear(self, version: int) -> None:
        self._post(plain(protocol.clear_tokens(version)))


class AnswerSource(Protocol):
    """What the answer handler needs from the session."""

    @property
    def store(self) -> TokenStore: ...
    @property
    def redirects(self) -> Mapping[str, protocol.Redirect]: ...
    @property
    def version(self) -> int: ...

    def storage_changed(self) -> bool: ...
    def caught_up(self) -> Awaitable[None]: ...
    def uses_dpop(self, entry: TokenEntry) -> bool: ...
    def dpop_key_ok(self, entry: TokenEntry) -> Awaitable[bool]: ...
    def can_refresh(self, realm: str) -> bool: ...
    def token_of(self, realm: str) -> str | None: ...
    def refresh(self, realm: str, stale: str | None) -> Awaitable[str]: ...
    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None: ...


class TokenAnswers:
    """Answers ``request-realm-token`` on the port the worker sent: the fresh token, or
    ``pending`` then the token after a refresh, or ``{app}`` (no token: the request falls
    through). A refresh that ends in a logout answers ``{app}``: no resurrection. When storage
    changed in this tab (the host wrote it), the answer waits for the session to be read again
    (``pending`` first): never an answer from a session the host replaced or removed."""

    def __init__(self, app: str, source: AnswerSource) -> None:
        self.app = app
        self.source = source
        self.counters = {"token_requests": 0, "answered_with_token": 0, "ignored_messages": 0}

    def handle(self, data: Any, port: Any = None) -> None:
        try:
            message = data.to_py() if isinstance(data, JsProxy) else data
        except Exception:  # noqa: BLE001 - a value we cannot convert is just ignored
            message = None
        url = protocol.parse_token_request(message)
        if url is None or port is None or not hasattr(port, "postMessage"):
            self.counters["ignored_messages"] += 1
            return
        self.counters["token_requests"] += 1
        src = self.source
        if src.storage_changed():  # (the hot path reads one localStorage value, nothing more)
            port.postMessage(plain(protocol.pending(self.app)))
            src.spawn(self._after_resync(url, message, port))
            return
        self._answer(url, message, port)

    async def _after_resync(self, url: str, message: Any, port: Any) -> None:
        await self.source.caught_up()  # one read of the record for all requests in the meantime
        self._answer(url, message, port)

    def _answer(self, url: str, message: Any, port: Any) -> None:
        src = self.source
        entry = src.store.lookup(url)
        if entry is not None and protocol.asks_for_key_check(message) and src.uses_dpop(entry):
            port.postMessage(plain(protocol.pending(self.app)))  # the worker has no DPoP key
            src.spawn(self._after_key_check(url, entry, port))
            return
        realm = src.store.realm_for(url) if entry is None else None  # only on a miss
        if realm is not None and src.can_refresh(realm):
            port.postMessage(plain(protocol.pending(self.app)))
            src.spawn(self._after_refresh(url, realm, port, src.token_of(realm)))
            return
        self._reply(port, entry)

    async def _after_refresh(self, url: str, realm: str, port: Any, stale: str | None) -> None:
        try:
            await self.source.refresh(realm, stale)
        except RefreshError:
            pass
        self._reply(port, self.source.store.lookup(url))  # after a logout: {app}

    async def _after_key_check(self, url: str, entry: TokenEntry, port: Any) -> None:
        ok = await self.source.dpop_key_ok(entry)  # a lost key is reported once
        self._reply(port, self.source.store.lookup(url) if ok else None)

    def _reply(self, port: Any, entry: TokenEntry | None) -> None:
        if entry is not None:
            self.counters["answered_with_token"] += 1
        src = self.source
        dpop = entry is not None and src.uses_dpop(entry)
        reply = protocol.token_reply(
            entry, self.app, src.redirects, src.store.skew, dpop, src.version
        )
        port.postMessage(plain(reply))
