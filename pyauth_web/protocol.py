"""The page <-> service-worker message protocol (page side). Sans-I/O.

The service worker's copy of the names is the ``MSG`` object at the top of ``sw/sw.js``;
``tests/unit/test_protocol_names.py`` checks that the two sides agree.

page -> SW (``postMessage`` to the active worker)::

    {type: 'sync-tokens', tokens: {realmURL: token}, expires: {realmURL: exp|null}, realms, skew}
    {type: 'set-realm-token', realmURL, token, exp, skew}
    {type: 'remove-realm-token', realmURL}
    {type: 'clear-tokens'}

SW -> page on a token miss (``client.postMessage(msg, [port])``)::

    {type: 'request-realm-token', requestURL}

page -> SW on that port: ``{realmURL, token, exp}`` or ``{}``; optionally first
``{type: 'pending'}``, which extends the SW's wait from 200 ms to at most 3000 ms.
"""

from __future__ import annotations

from typing import Any

from .tokens import TokenEntry, TokenStore

# Message names: the one place on the Python side.
SYNC_TOKENS = "sync-tokens"
SET_REALM_TOKEN = "set-realm-token"
REMOVE_REALM_TOKEN = "remove-realm-token"
CLEAR_TOKENS = "clear-tokens"
REQUEST_REALM_TOKEN = "request-realm-token"
PENDING = "pending"

MESSAGE_NAMES = {
    "SYNC_TOKENS": SYNC_TOKENS,
    "SET_REALM_TOKEN": SET_REALM_TOKEN,
    "REMOVE_REALM_TOKEN": REMOVE_REALM_TOKEN,
    "CLEAR_TOKENS": CLEAR_TOKENS,
    "REQUEST_REALM_TOKEN": REQUEST_REALM_TOKEN,
    "PENDING": PENDING,
}

ANSWER_BUDGET_MS = 200
PENDING_BUDGET_MS = 3000
MAX_URL_LENGTH = 8192

Message = dict[str, Any]


def parse_token_request(data: object) -> str | None:
    """The ``requestURL`` of a well-formed ``request-realm-token`` message, else ``None``."""
    if not isinstance(data, dict) or data.get("type") != REQUEST_REALM_TOKEN:
        return None
    url = data.get("requestURL")
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        return None
    return url


def token_reply(entry: TokenEntry | None) -> Message:
    if entry is None:
        return {}
    return {"realmURL": entry.realm, "token": entry.token, "exp": entry.exp}


def sync_tokens(store: TokenStore, realms: list[str] | tuple[str, ...] = ()) -> Message:
    """Full state for the worker; ``realms`` (the configured ones) say which origins to ask for."""
    entries = store.entries()
    return {
        "type": SYNC_TOKENS,
        "realms": sorted(set(realms) | set(entries)),
        "tokens": {r: e.token for r, e in entries.items()},
        "expires": {r: e.exp for r, e in entries.items()},
        "skew": store.skew,
    }


def set_realm_token(entry: TokenEntry, skew: float) -> Message:
    return {
        "type": SET_REALM_TOKEN,
        "realmURL": entry.realm,
        "token": entry.token,
        "exp": entry.exp,
        "skew": skew,
    }


def remove_realm_token(realm: str) -> Message:
    return {"type": REMOVE_REALM_TOKEN, "realmURL": realm}


def clear_tokens() -> Message:
    return {"type": CLEAR_TOKENS}
