"""Server-side network throttling for the benchmark's ``network`` section.

CDP network emulation throttles a page's own requests only: once the service worker controls the
page, the loader's downloads are the worker's and go unthrottled. Throttling where every request
passes, the server, sees them all: :class:`ThrottleProxy` is a TCP proxy in front of a server
(any number of them, one per origin), and every proxy given the same :class:`Budget` shares it:

- one downstream byte budget (server -> browser) for all connections of all those proxies, a
  token bucket refilled continuously and handed out a tick's worth (10 ms) at a time, so that
  concurrent connections share the link and the rate is smooth;
- a per-request latency: every client -> server chunk is forwarded one RTT after it arrived
  (order kept, later chunks pipelined behind it);
- a count of the bytes sent to the browser (:attr:`Budget.sent`; :meth:`Budget.reset_count`).

The proxies run on an asyncio loop (e.g. a :class:`~pyauth_web.demo.servers.ServerThread`'s);
:meth:`Budget.configure` switches the profile between runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

CHUNK = 64 * 1024


@dataclass(frozen=True)
class Profile:
    name: str
    mbit: float  # downstream, megabits per second
    rtt_ms: float  # added to every client -> server chunk

    @property
    def label(self) -> str:
        return f"{self.mbit:g} Mbit/s / {self.rtt_ms:g} ms"


class Budget:
    """The shared downstream byte budget and latency of a set of proxies."""

    def __init__(self, mbit: float, rtt_ms: float, tick: float = 0.01) -> None:
        self.tick = tick
        self.sent = 0  # bytes written to the browser since the last reset_count()
        self.received = 0  # bytes the browser sent
        self.configure(mbit, rtt_ms)

    def configure(self, mbit: float, rtt_ms: float) -> None:
        self.rate = mbit * 1e6 / 8  # bytes per second
        self.rtt = rtt_ms / 1000
        self.share = max(1, int(self.rate * self.tick))  # one tick's worth
        self.burst = 5 * self.share  # what an idle link may send at once (50 ms worth)
        self.tokens = 0.0
        self.stamp = time.monotonic()

    def reset_count(self) -> None:
        self.sent = 0
        self.received = 0

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    async def take(self, want: int) -> int:
        """Waits until the budget has bytes; returns how many of ``want`` may go now (at most
        one tick's worth, so that other connections get their turn)."""
        while True:
            self._refill()
            if self.tokens >= 1:
                n = min(want, self.share, int(self.tokens))
                self.tokens -= n
                return n
            await asyncio.sleep(self.tick)


class ThrottleProxy:
    """Listens on 127.0.0.1 and forwards each connection to ``upstream`` (host, port) through
    ``budget``. Start it on its loop with :meth:`start`; :attr:`origin` is then its URL."""

    def __init__(self, budget: Budget, upstream: tuple[str, int]) -> None:
        self.budget = budget
        self.upstream = upstream
        self.server: asyncio.Server | None = None
        self.origin = ""
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, host: str = "127.0.0.1") -> str:
        self.server = await asyncio.start_server(self._connection, host, 0)
        port = self.server.sockets[0].getsockname()[1]
        self.origin = f"http://{host}:{port}"
        return self.origin

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _connection(
        self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        server_w: asyncio.StreamWriter | None = None
        try:
            server_r, server_w = await asyncio.open_connection(*self.upstream)
            up = asyncio.ensure_future(self._upstream(client_r, server_w))
            down = asyncio.ensure_future(self._downstream(server_r, client_w))
            try:
                await asyncio.wait([up, down], return_when=asyncio.FIRST_COMPLETED)
                if not down.done():  # the browser is done: what the server still says, briefly
                    await asyncio.wait([down], timeout=5)
            finally:
                for task_ in (up, down):
                    task_.cancel()
                    with contextlib.suppress(asyncio.CancelledError, OSError):
                        await task_
        except (OSError, asyncio.IncompleteReadError):
            pass  # a connection the browser or the server dropped
        except asyncio.CancelledError:
            pass  # stop(): ends quietly (asyncio's stream callback logs a cancelled handler)
        finally:
            for writer in (client_w, server_w):
                if writer is not None:
                    writer.close()
            self._tasks.discard(task)

    async def _upstream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Client -> server: each chunk one RTT after it arrived, in order."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def send() -> None:
            while True:
                due, data = await queue.get()
                if not data:  # the browser closed its side
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                writer.write(data)
                await writer.drain()

        sender = asyncio.ensure_future(send())
        try:
            while True:
                data = await reader.read(CHUNK)
                self.budget.received += len(data)
                queue.put_nowait((time.monotonic() + self.budget.rtt, data))
                if not data:
                    break
            await sender
        finally:
            sender.cancel()

    async def _downstream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Server -> client: through the shared budget; counted."""
        while True:
            data = await reader.read(CHUNK)
            if not data:
                return
            view = memoryview(data)
            while view:
                n = await self.budget.take(len(view))
                writer.write(view[:n])
                self.budget.sent += n
                view = view[n:]
                await writer.drain()
