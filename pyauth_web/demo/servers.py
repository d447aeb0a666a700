"""Real HTTP servers on 127.0.0.1 for the demo and the e2e tests.

- :func:`host_app`: serves a bundle under ``/pyauth/``, its ``sw.js`` at ``/sw.js`` (with
  ``Service-Worker-Allowed: /``), the demo page, optional extra page folders, and a token
  issuer at ``POST /token``.
- :func:`realm_app`: a resource server on another origin that serves images and JSON only
  with a valid Bearer JWT, with CORS allowing ``Authorization``; it logs every request.

:class:`ServerThread` runs any of these on an event loop in a background thread.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import TypedDict

import jwt
from aiohttp import web
from aiohttp.typedefs import Handler

from .common import RealmLog, cors_headers, verify
from .streams import add_stream_routes

DEMO_SECRET = "pyauth-web-demo-secret-not-for-production"
STATIC_DIR = Path(__file__).with_name("static")
_MIME = {
    ".wasm": "application/wasm",
    ".mjs": "text/javascript",
    ".js": "text/javascript",
    ".whl": "application/zip",
    ".zip": "application/zip",
    ".json": "application/json",
    ".html": "text/html",
    ".svg": "image/svg+xml",
    ".css": "text/css",
}


# -- tokens -----------------------------------------------------------------------------------
class IssuerRequest(TypedDict):
    path: str
    realm: str
    t: float


@dataclass
class Issuer:
    """Mints HS256 JWTs for realms; counts what it was asked."""

    secret: str = DEMO_SECRET
    ttl: float = 300.0
    clock: Callable[[], float] = time.time
    requests: list[IssuerRequest] = field(default_factory=list)
    script: list[int | str] = field(default_factory=list)

    def refreshes(self, since: float = 0.0) -> list[IssuerRequest]:
        return [r for r in self.requests if r["path"] == "/refresh" and r["t"] >= since]

    def mint(self, realm: str, ttl: float | None = None, sub: str = "demo-user") -> str:
        now = self.clock()
        exp = now + (self.ttl if ttl is None else ttl)
        claims = {
            "sub": sub,
            "realm": realm,
            "iat": int(now),
            "exp": int(exp),
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self.secret, algorithm="HS256")


# -- static files -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Serving:
    """How a host sends the bundle's files. ``precompressed``: a file's ``.br``/``.gz`` copy
    with ``Content-Encoding`` when the browser accepts it (what nginx's gzip_static and
    brotli_static, or Caddy's ``precompressed``, do); else every file as it is. ``rate``: bytes
    per second every response is paced to (a slow link, for tests; the benchmark throttles in a
    proxy instead)."""

    precompressed: bool = True
    rate: float | None = None


SERVED = Serving()
_ENCODINGS = (("br", ".br"), ("gzip", ".gz"))  # aiohttp's own order of preference
_CHUNK = 16_384


async def _file_response(
    request: web.Request,
    path: Path,
    extra_headers: dict[str, str] | None = None,
    serving: Serving = SERVED,
) -> web.StreamResponse:
    headers = {
        "Content-Type": _MIME.get(path.suffix, "application/octet-stream"),
        "Cache-Control": "no-cache",
    }
    headers.update(extra_headers or {})
    if serving == SERVED:
        return web.FileResponse(path, headers=headers)  # negotiates .br/.gz copies itself
    accepted = request.headers.get("Accept-Encoding", "").lower()
    for encoding, suffix in _ENCODINGS if serving.precompressed else ():
        sibling = path.with_name(path.name + suffix)
        if encoding in accepted and sibling.is_file():
            path = sibling
            headers["Content-Encoding"] = encoding
            headers["Vary"] = "Accept-Encoding"
            break
    body = path.read_bytes()
    if serving.rate is None:
        return web.Response(body=body, headers=headers)
    response = web.StreamResponse(headers=headers)
    response.content_length = len(body)
    await response.prepare(request)
    for start in range(0, len(body), _CHUNK):
        await response.write(body[start : start + _CHUNK])
        await asyncio.sleep(min(_CHUNK, len(body) - start) / serving.rate)
    await response.write_eof()
    return response


def _safe_join(root: Path, rel: str) -> Path | None:
    target = (root / rel).resolve()
    if root.resolve() not in target.parents and target != root.resolve():
        return None
    return target if target.is_file() else None


def _static_route(
    root: Path, page_vars: dict[str, str] | None = None, serving: Serving = SERVED
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Files under ``root``; ``.html`` files get ``{{NAME}}`` (from ``page_vars``) and
    ``{{q.NAME}}`` (from the query string, HTML-escaped) filled in."""

    async def handler(request: web.Request) -> web.StreamResponse:
        target = _safe_join(root, request.match_info.get("path") or "index.html")
        if target is None:
            raise web.HTTPNotFound(text=f"not found: {request.path}")
        if target.suffix != ".html":
            return await _file_response(request, target, serving=serving)
        html = target.read_text()
        for key, value in (page_vars or {}).items():
            html = html.replace("{{" + key + "}}", value)
        for key, value in request.query.items():
            html = html.replace("{{q." + key + "}}", escape(value))
        return web.Response(
            text=html, content_type="text/html", headers={"Cache-Control": "no-cache"}
        )

    return handler


async def _no_content(request: web.Request) -> web.Response:
    return web.Response(status=204)


# -- the host origin --------------------------------------------------------------------------
def host_app(
    bundle_dir: Path,
    *,
    issuer: Issuer,
    page_vars: dict[str, str] | None = None,
    extra_dirs: dict[str, Path] | None = None,
    headers: dict[str, str] | None = None,
    serving: Serving = SERVED,
) -> web.Application:
    """The host origin: the bundle under ``/pyauth/``, ``/sw.js``, the demo page, a token issuer
    and refresh URL, and ``extra_dirs`` (e.g. test pages under ``/t/``). ``headers`` are added to
    every response (a test host serving a Content-Security-Policy, for instance); ``serving``
    says how the bundle's files are sent (precompressed copies, by default)."""

    @web.middleware
    async def add_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        response.headers.update(headers or {})
        return response

    app = web.Application(middlewares=[add_headers] if headers else [])
    page_vars = page_vars or {}

    async def service_worker(request: web.Request) -> web.StreamResponse:
        return await _file_response(
            request, bundle_dir / "sw.js", {"Service-Worker-Allowed": "/"}, serving
        )

    async def token(request: web.Request) -> web.StreamResponse:
        """``POST /token`` mints (``{realm, ttl}``); ``POST /refresh`` is a refresh URL
        (``{realmURL}`` in, ``{token}`` out). Both are logged; ``issuer.script`` can make the
        next refreshes fail (a status code) or drop the connection (``"drop"``)."""
        body = await request.json() if request.can_read_body else {}
        realm = str(body.get("realm") or body.get("realmURL") or "")
        issuer.requests.append({"path": request.path, "realm": realm, "t": time.time()})
        if request.path == "/refresh" and issuer.script:
            step = issuer.script.pop(0)
            if step == "drop":
                assert request.transport is not None
                request.transport.close()
                return web.Response(status=500)
            return web.json_response({"error": "scripted failure"}, status=int(step))
        if not realm:
            return web.json_response({"error": "realm required"}, status=400)
        ttl = body.get("ttl")
        return web.json_response({"token": issuer.mint(realm, float(ttl) if ttl else None)})

    pages = _static_route(STATIC_DIR, page_vars)
    app.router.add_get("/", pages)
    app.router.add_get("/favicon.ico", _no_content)
    app.router.add_get("/sw.js", service_worker)
    app.router.add_post("/token", token)
    app.router.add_post("/refresh", token)
    app.router.add_get("/pyauth/{path:.*}", _static_route(bundle_dir, serving=serving))
    app.router.add_get("/demo/{path:.*}", pages)
    for prefix, directory in (extra_dirs or {}).items():
        app.router.add_get(f"/{prefix}/{{path:.*}}", _static_route(directory, page_vars))
    return app


# -- a realm (resource server) origin ---------------------------------------------------------
def svg(label: str) -> str:
    hue = sum(label.encode()) * 37 % 360
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="96" height="96">'
        f'<rect width="96" height="96" rx="12" fill="hsl({hue},60%,55%)"/>'
        f'<text x="48" y="56" font-size="16" text-anchor="middle" fill="#fff">{label[:8]}</text>'
        "</svg>"
    )


def realm_app(
    secret: str = DEMO_SECRET,
    log: RealmLog | None = None,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    """A resource server: ``/img/NAME`` and ``/SCOPE/img/NAME`` (SVG) and ``/api/NAME`` (JSON)
    only with a valid Bearer JWT (checked against ``clock``); ``/api/reject/KEY?times=N``
    answers 401 to its first N requests whatever the token; SSE and WebSocket endpoints from
    :mod:`.streams`. Every request is logged (with its body and ``Last-Event-ID``)."""

    log = log if log is not None else RealmLog()
    rejected: dict[str, int] = {}

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        auth = request.headers.get("Authorization")
        ok, reason = verify(secret, auth, clock())
        if request.method == "OPTIONS":
            resp: web.StreamResponse = web.Response(status=204)
        else:
            body = await request.text() if request.can_read_body else None
            log.entries.append(
                {
                    "method": request.method,
                    "path": request.path,
                    "query": request.query_string,
                    "auth": auth,
                    "valid": ok,
                    "reason": reason,
                    "body": body,
                    "t": time.time(),
                    "last_event_id": request.headers.get("Last-Event-ID"),
                }
            )
            try:
                resp = await handler(request)
            except web.HTTPException as exc:
                resp = exc
        if not resp.prepared:  # streams set their headers before they start
            resp.headers.update(cors_headers(request))
        return resp

    def unauthorized(reason: str) -> web.Response:
        return web.json_response(
            {"error": "unauthorized", "reason": reason},
            status=401,
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )

    def denied(request: web.Request) -> web.Response | None:
        ok, reason = verify(secret, request.headers.get("Authorization"), clock())
        return None if ok else unauthorized(reason)

    async def image(request: web.Request) -> web.Response:
        if (refusal := denied(request)) is not None:
            return refusal
        return web.Response(text=svg(request.match_info["name"]), content_type="image/svg+xml")

    async def api(request: web.Request) -> web.Response:
        if (refusal := denied(request)) is not None:
            return refusal
        name = request.match_info.get("name") or request.match_info.get("key")
        _, _, token = (request.headers.get("Authorization") or "").partition(" ")
        sub = jwt.decode(token, options={"verify_signature": False}).get("sub")
        return web.json_response({"ok": True, "name": name, "sub": sub})

    async def reject(request: web.Request) -> web.Response:
        key = request.match_info["key"]
        rejected[key] = rejected.get(key, 0) + 1
        if rejected[key] <= int(request.query.get("times", "1")):
            return unauthorized("rejected by the test")
        return await api(request)

    async def redirect(request: web.Request) -> web.Response:
        """``/SCOPE/go/NAME?to=PATH``: 302 to ``PATH`` on this origin, whatever the token."""
        raise web.HTTPFound(request.query.get("to", "/"))

    app = web.Application(middlewares=[cors])
    app.router.add_get("/{scope}/go/{name}", redirect)
    app.router.add_get("/img/{name}", image)
    app.router.add_get("/{scope:.+}/img/{name}", image)  # path-scoped realms: /app/img/x
    app.router.add_route("*", "/api/reject/{key}", reject)
    app.router.add_route("*", "/api/{name}", api)
    app.router.add_route("*", "/{scope}/api/{name}", api)
    add_stream_routes(app, secret=secret, clock=clock, log=log, denied=denied)
    return app


# -- running servers --------------------------------------------------------------------------
class ServerThread:
    """Runs aiohttp applications on 127.0.0.1 in one background event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._runners: dict[str, web.AppRunner] = {}

    def serve(self, app: web.Application, port: int = 0, host: str = "127.0.0.1") -> str:
        """Start ``app``; returns its origin, e.g. ``http://127.0.0.1:41234``."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        origin = f"http://{host}:{sock.getsockname()[1]}"

        async def start() -> None:
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
            await runner.setup()
            await web.SockSite(runner, sock).start()
            self._runners[origin] = runner

        asyncio.run_coroutine_threadsafe(start(), self.loop).result(timeout=10)
        return origin

    async def stop(self, origin: str) -> None:
        """Stop one server (from its own loop); its port then refuses connections."""
        runner = self._runners.pop(origin, None)
        if runner is not None:
            await runner.cleanup()

    def close(self) -> None:
        async def stop_all() -> None:
            for origin in list(self._runners):
                await self.stop(origin)

        asyncio.run_coroutine_threadsafe(stop_all(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
