"""The cross-tab lock: the browser's Web Locks API (``navigator.locks``), as an async context."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import js
from pyodide.ffi import JsException, create_once_callable, create_proxy, to_js

_watchers: set[asyncio.Task[None]] = set()  # strong references until each request settles


@asynccontextmanager
async def web_lock(name: str) -> AsyncIterator[None]:
    """Hold the exclusive Web Lock ``name`` (shared by every tab of the origin) while inside.

    Cancelling the wait (the coordinator's lock deadline, a logout) withdraws the request from
    the lock's queue (``signal``), and a grant that raced the cancellation is released at once,
    so a tab that gave up never holds, nor keeps waiting for, the lock.

    Without Web Locks (an insecure context) this degrades to no cross-tab exclusion; the
    in-tab single-flight still holds and a sibling's refresh is still picked up from storage.
    """
    locks = getattr(js.navigator, "locks", None)
    if locks is None:
        yield
        return
    loop = asyncio.get_running_loop()
    granted: asyncio.Future[None] = loop.create_future()
    release: list[Any] = []
    # The lock is held until this promise settles; we settle it when the block ends.
    held = js.Promise.new(create_once_callable(lambda resolve, _reject: release.append(resolve)))

    was_granted: list[bool] = []  # (granted.done() also holds when the wait was cancelled)

    def on_grant(_lock: Any) -> Any:
        was_granted.append(True)
        if not granted.done():
            granted.set_result(None)
        return held  # already settled if we gave up: the lock is released at once

    callback = create_proxy(on_grant)
    abort = js.AbortController.new()
    options = to_js({"signal": abort.signal}, dict_converter=js.Object.fromEntries)
    try:
        request = locks.request(name, options, callback)
    except JsException:
        callback.destroy()
        raise
    watcher = loop.create_task(_settled(request, callback))
    _watchers.add(watcher)
    watcher.add_done_callback(_watchers.discard)
    try:
        await granted
        yield
    finally:
        release[0]()
        if not was_granted:  # gave up waiting: leave the queue
            abort.abort()


async def _settled(request: Any, callback: Any) -> None:
    """Wait for the lock request to settle (released, or aborted while queued: an AbortError,
    handled here rather than left as an unhandled rejection), then free the grant callback,
    which cannot be called any more."""
    try:
        await request
    except JsException:
        pass
    finally:
        callback.destroy()
