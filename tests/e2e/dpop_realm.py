"""A resource server that accepts only DPoP-bound access tokens with a valid proof (RFC 9449),
checked with real libraries: the proof's ES256 signature with PyJWT (``cryptography``), the
key's thumbprint with joserfc, the access token's signature with PyJWT (the OpenID Provider's
JWKS, or a test secret).

Every check of §4.3 and §7: ``Authorization: DPoP``, one ``DPoP`` header, ``typ``/``alg``/
public ``jwk``, the signature, ``htm``, ``htu`` (no query or fragment), ``iat`` within
:data:`IAT_WINDOW`, ``jti`` never seen before, ``ath`` = SHA-256 of the token, the thumbprint =
the token's ``cnf.jkt``, and with ``require_nonce`` the nonce it gave last (a ``401`` with
``WWW-Authenticate: DPoP error="use_dpop_nonce"`` and ``DPoP-Nonce`` otherwise). Routes:
``/img/NAME`` (SVG), ``/api/NAME`` (JSON), ``/sse/ticker?count=N`` (N events, then held),
``/go?to=PATH`` (302), ``/ws`` (WebSocket; the token and proof in the first message).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from aiohttp.typedefs import Handler
from joserfc.jwk import ECKey

IAT_WINDOW = 60
CLAIMS = web.RequestKey("claims", dict)


@dataclass
class DPoPLog:
    entries: list[dict[str, Any]] = field(default_factory=list)

    def for_path(self, path: str) -> list[dict[str, Any]]:
        return [e for e in self.entries if e["path"] == path]


class Refused(Exception):
    def __init__(self, reason: str, nonce: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.nonce = nonce


def hs256_tokens(secret: str) -> Callable[[str], dict[str, Any]]:
    def verify(token: str) -> dict[str, Any]:
        return jwt.decode(token, secret, algorithms=["HS256"])

    return verify


def provider_tokens(issuer: str, audience: str) -> Callable[[str], dict[str, Any]]:
    """Access tokens signed by the OpenID Provider (its JWKS), for ``audience``."""
    jwks = jwt.PyJWKClient(f"{issuer}/jwks")

    def verify(token: str) -> dict[str, Any]:
        key = jwks.get_signing_key_from_jwt(token)
        return jwt.decode(
            token, key.key, algorithms=["RS256", "PS256", "ES256"], audience=audience,
            issuer=issuer,
        )

    return verify


def dpop_realm_app(
    verify_token: Callable[[str], dict[str, Any]],
    log: DPoPLog,
    *,
    require_nonce: bool = False,
) -> web.Application:
    seen_jti: set[str] = set()
    nonce = {"current": secrets.token_urlsafe(16)}

    def check(request: web.Request) -> dict[str, Any]:
        scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
        if scheme != "DPoP" or not token:
            raise Refused(f"not a DPoP token (scheme {scheme!r})")
        proofs = request.headers.getall("DPoP", [])
        if len(proofs) != 1:
            raise Refused(f"{len(proofs)} DPoP proofs")
        url = request.url.with_query(None).with_fragment(None)
        return check_proof(token, proofs[0], request.method, str(url))

    def check_proof(token: str, proof: str, method: str, url: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(proof)
            if header.get("typ") != "dpop+jwt" or header.get("alg") != "ES256":
                raise Refused("bad proof header")
            jwk = header.get("jwk")
            if not isinstance(jwk, dict) or "d" in jwk:
                raise Refused("proof jwk is not a public key")
            key = jwt.PyJWK(jwk, algorithm="ES256")
            claims = jwt.decode(
                proof, key.key, algorithms=["ES256"],
                options={"require": ["iat", "jti", "htm", "htu"], "verify_aud": False},
            )
        except jwt.PyJWTError as exc:
            raise Refused(f"proof: {exc}") from None
        if claims["htm"] != method:
            raise Refused("htm mismatch")
        if claims["htu"] != url:
            raise Refused(f"htu mismatch: {claims['htu']} != {url}")
        if abs(time.time() - claims["iat"]) > IAT_WINDOW:
            raise Refused("iat outside the window")
        if claims["jti"] in seen_jti:
            raise Refused("proof replayed (jti seen)")
        expected_ath = base64.urlsafe_b64encode(hashlib.sha256(token.encode()).digest())
        if claims.get("ath") != expected_ath.rstrip(b"=").decode():
            raise Refused("ath mismatch")
        if require_nonce and claims.get("nonce") != nonce["current"]:
            raise Refused("nonce required", nonce=True)
        try:
            token_claims = verify_token(token)
        except jwt.PyJWTError as exc:
            raise Refused(f"access token: {exc}") from None
        jkt = (token_claims.get("cnf") or {}).get("jkt")
        if jkt != ECKey.import_key(jwk).thumbprint():
            raise Refused("the proof key is not the key the token is bound to")
        seen_jti.add(claims["jti"])
        return {"sub": token_claims.get("sub"), "nonce": claims.get("nonce")}

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        cors = {
            "Access-Control-Allow-Origin": request.headers.get("Origin") or "*",
            "Access-Control-Allow-Headers": "Authorization, DPoP, Content-Type, Cache-Control, Last-Event-ID",
            "Access-Control-Expose-Headers": "DPoP-Nonce, WWW-Authenticate",
            "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
            "Cache-Control": "no-store",
            "Vary": "Origin",
        }
        if request.method == "OPTIONS":
            return web.Response(status=204, headers=cors)
        if request.path == "/ws":  # authenticated by its first message
            return await handler(request)
        entry: dict[str, Any] = {
            "method": request.method, "path": request.path, "t": time.time(),
            "auth": request.headers.get("Authorization"), "proof": request.headers.get("DPoP"),
        }
        log.entries.append(entry)
        try:
            entry.update(check(request), valid=True, reason="ok")
        except Refused as refused:
            entry.update(valid=False, reason=refused.reason)
            error = "use_dpop_nonce" if refused.nonce else "invalid_token"
            headers = {**cors, "WWW-Authenticate": f'DPoP algs="ES256", error="{error}"'}
            if refused.nonce:
                headers["DPoP-Nonce"] = nonce["current"]
            return web.json_response({"error": error, "reason": refused.reason}, status=401, headers=headers)
        request[CLAIMS] = entry
        resp = await handler(request)
        if resp.prepared:  # a stream, ended
            return resp
        resp.headers.update(cors)
        if require_nonce:
            resp.headers["DPoP-Nonce"] = nonce["current"]
        return resp

    async def image(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        svg = (
            '<svg xmlns="http://www.w3.org/2000/svg" width="40" height="40">'
            f'<rect width="40" height="40" fill="#3a6"/><text y="24">{name[:4]}</text></svg>'
        )
        return web.Response(text=svg, content_type="image/svg+xml")

    async def api(request: web.Request) -> web.StreamResponse:
        return web.json_response({"ok": True, "sub": request[CLAIMS]["sub"]})

    async def ticker(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        resp.headers.update({
            "Access-Control-Allow-Origin": request.headers.get("Origin") or "*",
            "Access-Control-Expose-Headers": "DPoP-Nonce, WWW-Authenticate",
        })
        await resp.prepare(request)
        for i in range(int(request.query.get("count", "3"))):
            await resp.write(f"id: {i}\ndata: tick {i}\n\n".encode())
        await asyncio.sleep(30)
        return resp

    async def socket(request: web.Request) -> web.StreamResponse:
        """The first message ``{"type": "auth", "token", "dpop"}`` (a handshake has no headers):
        the proof's ``htu`` is the socket's http URL. Logged like a request; echoes after."""
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        first = await ws.receive_json(timeout=10)
        entry: dict[str, Any] = {"method": "WS", "path": "/ws", "t": time.time(),
                                 "auth": first.get("token"), "proof": first.get("dpop")}
        log.entries.append(entry)
        http_url = str(request.url.with_scheme("http").with_query(None))
        try:
            entry.update(check_proof(first.get("token") or "", first.get("dpop") or "", "GET", http_url),
                         valid=True, reason="ok")
        except Refused as refused:
            entry.update(valid=False, reason=refused.reason)
            await ws.close(code=4401, message=refused.reason.encode()[:120])
            return ws
        await ws.send_json({"ok": True})
        async for msg in ws:
            await ws.send_json({"echo": msg.data})
        return ws

    async def go(request: web.Request) -> web.StreamResponse:
        return web.Response(status=302, headers={"Location": request.query.get("to", "/")})

    app = web.Application(middlewares=[guard])
    app.router.add_get("/ws", socket)
    app.router.add_get("/go", go)
    app.router.add_get("/img/{name}", image)
    app.router.add_route("*", "/api/{name}", api)
    app.router.add_get("/sse/ticker", ticker)
    return app
