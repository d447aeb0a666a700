"""The facade that ``window.pyauthWeb`` wraps (and Python in the page gets from
:func:`pyauth_web.browser.runtime.current`): converts JS values, checks arguments, delegates.

Proxy lifetimes: the loader holds the one PyProxy of this object for the page's life; stream
and socket handles are destroyed by the loader when the host closes them; everything else
crosses as converted values (``to_js``), never as long-lived proxies.
"""

from __future__ import annotations

import json
import math
from typing import Any

from pyodide.ffi import JsProxy, jsnull

from pyauth_web.browser import fetch as auth_fetch
from pyauth_web.browser import urls
from pyauth_web.browser.session import Session
from pyauth_web.browser.sse import StreamHandle, start_stream
from pyauth_web.browser.worker import TokenAnswers
from pyauth_web.browser.ws import RotatingSocket
from pyauth_web.options import parse_options
from pyauth_web.protocol import Redirect


def py(value: Any) -> Any:
    """A JS value as Python: objects become dicts, ``null`` (like ``undefined``) ``None``;
    functions stay callable proxies."""
    if isinstance(value, JsProxy):
        value = value.to_py()
    if value is jsnull:
        return None
    if isinstance(value, dict):
        return {k: py(v) for k, v in value.items()}
    if isinstance(value, list):
        return [py(v) for v in value]
    return value


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float as ``None`` (JSON has no NaN or Infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


class PyAuthWeb:
    def __init__(self, session: Session, answers: TokenAnswers) -> None:
        self.session = session
        self.answers = answers

    # -- the worker and the loader ------------------------------------------------------------
    def handle_sw_message(self, data: Any, port: Any = None) -> None:
        """Answer a service worker's ``request-realm-token``; ignore anything else."""
        self.answers.handle(data, port)

    def sync_worker(self) -> None:
        self.session.sync_worker()

    # -- session ------------------------------------------------------------------------------
    def configure(self, options: Any) -> None:
        """``pyauthWeb.configure(options)``; see :mod:`pyauth_web.options` (and the README).
        A bad option raises a one-line ``ValueError`` naming it; nothing changes then."""
        opts = py(options)
        coordinator = self.session.coordinator
        self.session.apply(
            parse_options(
                opts,
                refresh_timeout=coordinator.refresh_timeout,
                lock_timeout=coordinator.lock_timeout,
                canonical=self.session.store.canonical_realm,
            )
        )

    async def set_token(self, realm_url: str, token: str, refresh_token: str | None = None) -> None:
        await self.session.set_token(realm_url, token, refresh_token)

    async def remove_token(self, realm_url: str) -> None:
        await self.session.remove_token(realm_url)

    async def clear_tokens(self) -> None:
        """Log out: every token and refresh token of the app, and its DPoP key."""
        await self.session.clear_tokens()

    async def dpop_proof(self, method: str, url: str, options: Any = None) -> str:
        """``pyauthWeb.dpopProof(method, url, {nonce})``: see :meth:`Session.dpop_proof`."""
        opts = py(options) or {}
        nonce = opts.get("nonce") if isinstance(opts, dict) else None
        if nonce is not None and not isinstance(nonce, str):
            raise ValueError(f"dpopProof: nonce must be a string, got {nonce!r}")
        target = urls.canonical(str(url))
        if target is None:
            raise ValueError(f"dpopProof: not an absolute http(s) URL: {url!r}")
        return await self.session.dpop.proof_for_host(str(method), target, nonce)

    async def reload(self) -> None:
        """``pyauthWeb.reload()``: the host wrote storage in this tab: read the session now
        (taking the host's value into the record) and tell the worker."""
        await self.session.resync(self.session.storage.seen, announce=True)

    # -- requests -----------------------------------------------------------------------------
    async def get_token(self, url: Any) -> str | None:
        """The fresh token for ``url``; refreshes first when it is stale and a refresher is
        configured; ``None`` when no realm holds a token for it. Raises on refresh failure.

        Answers for ``url`` as the browser would send it (resolved against the page and
        canonicalised by its URL parser; a ws(s) URL as its http(s) equivalent): a URL that
        does not parse, or is not http(s)/ws(s), has no token."""
        return await self.session.get_token(url)

    def redirect_for(self, url: str | None) -> Redirect:
        """``fetch``'s ``redirect`` option for a request carrying the token for ``url``: the
        realm's redirect mode ('error' keeps a redirect from taking the token to a sibling path
        of the origin; see :func:`pyauth_web.protocol.redirect_mode`)."""
        return self.session.redirect_for(url)

    async def fetch(self, input: Any, init: Any = None, transport: Any = None) -> Any:
        """``pyauthWeb.fetch`` / ``wrapFetch``: see :mod:`pyauth_web.browser.fetch`."""
        return await auth_fetch.js_fetch(self.session, input, init, transport)

    def stream(self, url: str, options: Any = None) -> StreamHandle:
        """``pyauthWeb.stream(url, {onEvent, onStateChange, resync})``: SSE over fetch."""
        return start_stream(self.session, url, options)

    def socket(self, url: str, options: Any = None) -> RotatingSocket:
        """``pyauthWeb.socket(url, {onMessage, onStateChange, tokenIn})``: WebSocket with
        token rotation (see :mod:`pyauth_web.browser.ws`)."""
        opts = options.to_py(depth=1) if options is not None else {}
        sock = RotatingSocket(
            self.session,
            url,
            token_in=str(opts.get("tokenIn") or "message"),
            on_message=opts.get("onMessage"),
            on_state=opts.get("onStateChange"),
        )
        self.session.spawn(sock.start())
        return sock

    # -- state --------------------------------------------------------------------------------
    def state_json(self) -> str:
        """The state as JSON; always valid JSON (a non-finite number becomes ``null``)."""
        s = self.session
        now = s.store.clock()
        state = {
            "realms": s.realms,
            "skew": s.store.skew,
            "tokens": [
                {
                    "realmURL": e.realm,
                    "exp": e.exp,
                    "fresh": e.is_fresh(now, s.store.skew),
                    "refreshAt": s.timers.due(e.realm),
                    "failed": bool(s.coordinator.failed(e.realm)),
                }
                for e in s.store.entries().values()
            ],
            "counters": {**self.answers.counters, "refreshes": s.refreshes},
        }
        return json.dumps(_finite(state), allow_nan=False)
