"""SSE and WebSocket endpoints of the demo/test realm server; each checks the Bearer token.

SSE (``GET``, token in ``Authorization``, resumes after ``Last-Event-ID``):

- ``/sse/ticker?count=N&interval=S``: events ``id: k`` / ``data: tick k`` up to N; the stream
  is closed when the token it was opened with expires (as a real server would), and held open
  once all N were sent;
- ``/sse/flap``: ``200`` and an immediate close, no event;
- ``/sse/deny``: always ``401``;
- ``/sse/fatal``: one ``event: error`` then close.

WebSocket ``/ws`` (and ``/SCOPE.../ws`` for path-scoped realms, logged under its own path):
the token comes in the first message ``{"type": "auth", "token"}`` or the ``access_token``
query parameter; the connect is logged with that token as ``auth``, the query string and the
first message as ``body``. Messages are echoed as ``{"echo": m}``; ``{"cmd": "expire"}`` (or
the token passing ``exp``) gets ``{"error": "tokenExpired"}``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import jwt
from aiohttp import WSMsgType, web

from .common import RealmLog, cors_headers, verify


def _exp(header: str | None) -> float | None:
    token = (header or "").partition(" ")[2]
    try:
        exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
    except jwt.PyJWTError:
        return None
    return float(exp) if isinstance(exp, int | float) else None


def _command(text: str) -> str | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data.get("cmd") if isinstance(data, dict) else None


def add_stream_routes(
    app: web.Application,
    *,
    secret: str,
    clock: Callable[[], float],
    log: RealmLog,
    denied: Callable[[web.Request], web.Response | None],
) -> None:
    async def open_stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", **cors_headers(request)}
        )
        await resp.prepare(request)
        return resp

    async def ticker(request: web.Request) -> web.StreamResponse:
        if (refusal := denied(request)) is not None:
            return refusal
        exp = _exp(request.headers.get("Authorization"))
        count = int(request.query.get("count", "30"))
        interval = float(request.query.get("interval", "0.2"))
        last = int(request.headers.get("Last-Event-ID") or 0)
        resp = await open_stream(request)
        for k in range(last + 1, count + 1):
            if exp is not None and clock() >= exp:
                return resp  # the connection's token expired: the server ends the stream
            await resp.write(f"id: {k}\ndata: tick {k}\n\n".encode())
            await asyncio.sleep(interval)
        for _ in range(600):  # all sent: stay open (at most 60 s) until the client leaves
            if request.transport is None or request.transport.is_closing():
                break
            await asyncio.sleep(0.1)
        return resp

    async def flap(request: web.Request) -> web.StreamResponse:
        return await open_stream(request)

    async def deny(request: web.Request) -> web.Response:
        return web.json_response({"error": "unauthorized"}, status=401)

    async def fatal(request: web.Request) -> web.StreamResponse:
        resp = await open_stream(request)
        await resp.write(b"event: error\ndata: the server gave up\n\n")
        return resp

    async def socket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        token = request.query.get("access_token")
        first_text: str | None = None
        if token is None:
            first = await ws.receive(timeout=10)
            first_text = first.data if first.type == WSMsgType.TEXT else None
            try:
                token = json.loads(first.data).get("token") if first_text is not None else None
            except (ValueError, AttributeError):
                token = None
        header = f"Bearer {token}" if token else None
        ok, reason = verify(secret, header, clock())
        log.entries.append(
            {
                "method": "WS",
                "path": request.path,
                "query": request.query_string,
                "auth": header,
                "valid": ok,
                "reason": reason,
                "body": first_text,
                "t": time.time(),
            }
        )
        if not ok:
            await ws.send_json({"error": "unauthorized", "reason": reason})
            await ws.close(code=4401)
            return ws
        exp = _exp(header)
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            log.entries.append(
                {
                    "method": "WS",
                    "path": request.path + "/message",
                    "auth": header,
                    "valid": True,
                    "reason": "ok",
                    "body": msg.data,
                    "t": time.time(),
                }
            )
            expired = exp is not None and clock() >= exp
            if expired or _command(msg.data) == "expire":
                await ws.send_json({"error": "tokenExpired"})
            else:
                await ws.send_json({"echo": msg.data})
        return ws

    app.router.add_get("/sse/ticker", ticker)
    app.router.add_get("/sse/flap", flap)
    app.router.add_get("/sse/deny", deny)
    app.router.add_get("/sse/fatal", fatal)
    app.router.add_get("/ws", socket)
    app.router.add_get("/{scope:.+}/ws", socket)  # path-scoped realms, e.g. /app/ws
