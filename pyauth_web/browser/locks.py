"""The cross-tab lock: the browser's Web Locks API (``navigator.locks``), as an async context."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import js
from pyodide.ffi import create_once_callable


@asynccontextmanager
async def web_lock(name: str) -> AsyncIterator[None]:
    """Hold the exclusive Web Lock ``name`` (shared by every tab of the origin) while inside.

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

    def on_grant(_lock: Any) -> Any:
        if not granted.done():
            granted.set_result(None)
        return held

    locks.request(name, create_once_callable(on_grant))
    try:
        await granted
        yield
    finally:
        release[0]()  # also covers cancellation while waiting: the grant then ends at once
