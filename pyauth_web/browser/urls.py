"""Request URLs as the browser will send them, for realm matching.

The browser resolves ``..`` and ``.`` segments (also spelled ``%2e``), turns ``\\`` into ``/``,
drops tabs and newlines, and resolves relative URLs against the page *before* it sends a
request. A realm prefix checked on the raw string can therefore approve a URL that goes
somewhere else. So every consumer canonicalises with the browser's own (WHATWG) URL parser,
matches realms on that canonical form, and sends exactly that canonical URL.
"""

from __future__ import annotations

from typing import Any

import js
from pyodide.ffi import JsException, JsProxy

from pyauth_web.realms import check_realm, rejected

# scheme -> the scheme realms are matched on / a WebSocket is opened with
_HTTP_SCHEME = {"http:": "http:", "https:": "https:", "ws:": "http:", "wss:": "https:"}
_WS_SCHEME = {"http:": "ws:", "https:": "wss:", "ws:": "ws:", "wss:": "wss:"}


def canonical(url: Any) -> str | None:
    """``url`` resolved against the page and serialised by the browser's URL parser (any
    scheme), or ``None`` when it does not parse."""
    if not isinstance(url, str | JsProxy):
        return None
    try:
        return str(js.URL.new(url, js.location.href).href)
    except JsException:
        return None


def _with_scheme(href: str, schemes: dict[str, str]) -> str | None:
    scheme, colon, rest = href.partition(":")
    new = schemes.get(scheme + colon)
    return None if new is None else new + rest


def for_matching(url: Any) -> str | None:
    """The canonical http(s) form of ``url`` that realms are matched on (a ws(s) URL as its
    http(s) equivalent); ``None`` when it does not parse or has another scheme (no token)."""
    href = canonical(url)
    return None if href is None else _with_scheme(href, _HTTP_SCHEME)


def websocket(url: Any) -> str | None:
    """The canonical ws(s) URL a WebSocket to ``url`` opens (http(s) maps to ws(s), as the
    ``WebSocket`` constructor does); ``None`` when it does not parse or has another scheme."""
    href = canonical(url)
    return None if href is None else _with_scheme(href, _WS_SCHEME)


def realm(text: Any) -> str:
    """The canonical form of the realm URL ``text``: the browser's URL parser's serialisation
    (no base: a realm is absolute), checked by :func:`pyauth_web.realms.check_realm`. Raises
    :class:`~pyauth_web.realms.InvalidRealm` with a one-line message naming ``text``."""
    if not isinstance(text, str):
        raise rejected(text, f"must be a string, not {type(text).__name__}")
    try:
        href = str(js.URL.new(text).href)
    except JsException:
        raise rejected(text, "must be an absolute http(s) URL") from None
    return check_realm(href, text)
