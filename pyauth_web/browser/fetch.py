"""Authenticated fetch: drives the sans-I/O :func:`pyauth_web.authflow.auth_flow`.

- :meth:`FetchDriver.js_fetch` backs ``pyauthWeb.fetch(input, init)`` and
  ``pyauthWeb.wrapFetch(fn)`` (any fetch-compatible JS function as the transport);
- :func:`fetch` is ``await pyauth_web.fetch(url, **init)`` for Python in the page, on top of
  Pyodide's ``pyfetch``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import js
from pyodide.ffi import JsProxy, to_js
from pyodide.http import FetchResponse, pyfetch

from pyauth_web import dpop
from pyauth_web.authflow import ForceRefresh, GetToken, Send, auth_flow
from pyauth_web.browser import source, urls
from pyauth_web.browser.source import TokenSource
from pyauth_web.protocol import Redirect
from pyauth_web.refresh import RefreshError

ERROR = Redirect.ERROR


async def run_flow(
    rt: TokenSource,
    url: str,
    replayable: bool,
    send: Callable[[str | None], Awaitable[Any]],
    nonce_asked: Callable[[], bool] = lambda: False,
) -> Any:
    """``url`` is where ``send`` sends the request, exactly (the canonical URL);
    ``nonce_asked()``: whether the last response asked for a DPoP nonce retry."""
    match = urls.for_matching(url)  # None: no realm can hold a token for it

    def current() -> str | None:
        return rt.current_token(match) if match else None

    flow = auth_flow(
        replayable=replayable, current_token=current, asks_for_nonce=lambda _: nonce_asked()
    )
    command = next(flow)
    while True:
        answer: Any
        if isinstance(command, GetToken):
            try:
                answer = await rt.get_token(match) if match else None
            except RefreshError:
                answer = None  # reported once through console:auth-error; send unauthenticated
        elif isinstance(command, Send):
            answer = await send(command.token)
        elif isinstance(command, ForceRefresh):
            try:
                answer = await rt.force_refresh(match, command.stale_token) if match else None
            except RefreshError:
                answer = None
        try:
            command = flow.send(answer)
        except StopIteration as done:
            return done.value


def _is_stream(value: Any) -> bool:
    return isinstance(value, JsProxy) and bool(
        js.Object.prototype.toString.call(value) == "[object ReadableStream]"
    )


async def js_fetch(rt: TokenSource, input: Any, init: Any = None, transport: Any = None) -> Any:
    """``pyauthWeb.fetch``: returns the JS ``Response`` of the last attempt. The ``Request``
    constructor canonicalises the URL; every attempt is sent to exactly that ``request.url``."""
    transport = transport or js.fetch
    request = js.Request.new(input, init) if init is not None else js.Request.new(input)
    body = getattr(init, "body", None) if init is not None else None
    replayable = not _is_stream(body)

    url = str(request.url)
    asked = [False]

    async def send(token: str | None) -> Any:
        base = request.clone() if replayable else request
        headers = js.Headers.new(base.headers)
        options: dict[str, Any] = {"headers": headers}
        sent = await _authorize(rt, url, str(request.method), token, headers.set)
        if sent is not None and (sent.proof or rt.redirect_for(urls.for_matching(url)) is ERROR):
            options["redirect"] = "error"
        options = to_js(options, dict_converter=js.Object.fromEntries)
        response = await transport(js.Request.new(base, options))
        if sent is not None and sent.proof:
            h = response.headers
            asked[0] = rt.saw_response(
                url, int(response.status), h.get("WWW-Authenticate"), h.get(dpop.NONCE_HEADER)
            )
        return response

    return await run_flow(rt, url, replayable, send, lambda: asked[0])


class Sent(NamedTuple):
    proof: bool  # a DPoP proof went with the token: no redirect may take it elsewhere


async def _authorize(
    rt: TokenSource,
    url: str,
    method: str,
    token: str | None,
    set_header: Callable[[str, str], Any],
) -> Sent | None:
    """Set the headers that send ``token``; ``None`` when none is sent (no token, or a lost
    DPoP key, reported once: the request then goes without it)."""
    if token is None:
        return None
    try:
        headers = await rt.auth_headers(url, method, token)
    except RefreshError:
        return None
    for name, value in headers.items():
        set_header(name, value)
    return Sent(dpop.PROOF_HEADER in headers)


async def fetch(url: str, **init: Any) -> FetchResponse:
    """``await pyauth_web.fetch(url, **init)``: ``pyfetch`` with the realm's token, a proactive
    refresh when it is stale, and one forced refresh + retry on 401 (the body is replayed)."""
    rt = source.current()
    # Sent to exactly the URL the token was chosen for: the browser's canonical form (resolved
    # against the page). One that does not parse goes as given, without a token, and fails
    # as fetch fails.
    target = urls.canonical(url) or url
    replayable = not _is_stream(init.get("body"))

    asked = [False]
    method = str(init.get("method") or "GET")  # signed as fetch sends it (dpop.method)

    async def send(token: str | None) -> FetchResponse:
        headers = dict(init.get("headers") or {})
        extra: dict[str, Any] = {}
        sent = await _authorize(rt, target, method, token, headers.__setitem__)
        if sent is not None and (sent.proof or rt.redirect_for(urls.for_matching(target)) is ERROR):
            extra["redirect"] = "error"
        response = await pyfetch(target, **{**init, "headers": headers, **extra})
        if sent is not None and sent.proof:
            h = {k.lower(): v for k, v in response.headers.items()}
            asked[0] = rt.saw_response(
                target, response.status, h.get("www-authenticate"), h.get("dpop-nonce")
            )
        return response

    response: FetchResponse = await run_flow(rt, target, replayable, send, lambda: asked[0])
    return response
