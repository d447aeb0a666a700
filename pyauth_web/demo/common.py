"""What the demo's realm server and its stream routes share: token checks, CORS, the log."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import NotRequired, TypedDict

import jwt
from aiohttp import web


def verify(secret: str, header: str | None, now: float | None = None) -> tuple[bool, str]:
    """(valid, reason) for an ``Authorization`` header value, at time ``now``."""
    if not header:
        return False, "no Authorization header"
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False, "not a Bearer token"
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
        )
    except jwt.PyJWTError as exc:
        return False, f"invalid token: {exc}"
    exp = claims.get("exp")
    if isinstance(exp, int | float) and exp <= (time.time() if now is None else now):
        return False, "token expired"
    return True, "ok"


class RealmRequest(TypedDict):
    """One request as the realm server saw it (a WebSocket message: no query, no event id)."""

    method: str
    path: str
    query: NotRequired[str]
    auth: str | None
    valid: bool
    reason: str
    body: str | None
    t: float
    last_event_id: NotRequired[str | None]


@dataclass
class RealmLog:
    entries: list[RealmRequest] = field(default_factory=list)

    def for_path(self, path: str) -> list[RealmRequest]:
        return [e for e in self.entries if e["path"] == path]


def cors_headers(request: web.Request) -> dict[str, str]:
    return {
        "Access-Control-Allow-Origin": request.headers.get("Origin") or "*",
        "Access-Control-Allow-Headers": "Authorization, Content-Type, Last-Event-ID, Cache-Control",
        "Access-Control-Allow-Methods": "GET, HEAD, POST, PUT, DELETE, OPTIONS",
        "Access-Control-Max-Age": "600",
        "Vary": "Origin",
        "Cache-Control": "no-store",
    }
