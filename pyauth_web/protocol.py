"""The page <-> service-worker message protocol (page side). Sans-I/O.

The service worker's copy of the names is the ``MSG`` object at the top of ``sw/sw.js``;
``tests/unit/test_protocol.py`` checks that the two sides agree.

Every message carries ``app``: the page's storage key. The worker keeps tokens, realms and
logouts per app, and serves a client only after it joined an app (any message from it, or an
answer to a token request). The loader adds ``app`` to what the runtime posts.

page -> SW (``postMessage`` to every worker of the registration; the loader adds ``app``,
``fp`` (a fingerprint of the stored session), ``v`` (:data:`PROTOCOL_VERSION`) and an ``ack``
id)::

    {type: 'hello', app, realms}        (the loader; ``realms``: the ones it may hold tokens for)
    {type: 'sync-tokens', app, version, cleared, since: {realmURL: version},
     tokens: {realmURL: token}, expires: {realmURL: exp|null},
     redirects: {realmURL: 'follow'|'error'}, dpop: {realmURL: true}, realms, skew}
    {type: 'set-realm-token', app, version, since, realmURL, token, exp, redirect, dpop, skew}
    {type: 'remove-realm-token', app, version, realmURL}
    {type: 'clear-tokens', app, version}
    {type: 'worker-ticket', app, url}

``version`` is the version of the app's session record (:mod:`pyauth_web.record`) the message's
tokens were read at; ``cleared`` and ``since`` are the record's marks (the version of the last
logout; per realm, the version its current session began or ended at), and ``clear-tokens`` and
``remove-realm-token`` carry the version that ended the session. The worker keeps a token only
if no logout, and no removal or new session of its realm, came after it
(``SessionRecord.accepts``). ``dpop`` names the realms whose tokens are bound: the
realms holding a bound token and those configured bound (``data-dpop``, ``configure``).

SW -> page on a token miss (``client.postMessage(msg, [port])``)::

    {type: 'request-realm-token', requestURL}
    {type: 'request-realm-token', requestURL, keyMissing: true}   (no DPoP key in the worker)

SW -> page after applying a message: ``{type: 'ack', ack, v}`` (``v``: the worker's protocol
version, :data:`PROTOCOL_VERSION`).

``dpop`` (``true`` for a DPoP-bound token, RFC 9449): the worker sends ``Authorization: DPoP``
with a proof signed by the app's key (:mod:`pyauth_web.dpop`), never ``Bearer``.

page -> SW on that port: ``{app, version, realmURL, token, exp, redirect, dpop, skew}`` or
``{app}``;
optionally first ``{type: 'pending', app}``, which extends the SW's wait from 200 ms to at most
3000 ms.

page -> other tabs and the SW (``BroadcastChannel`` :data:`RECORD_CHANNEL`), after a change that
ends a session: ``{type: 'record', app, version, logout}``: read the record again (after a
logout, drop everything at once). The worker hears it even when it was not yet listed by the
page that logged out (a version being installed).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Protocol
from urllib.parse import urlsplit

from .realms import Canonicaliser, canonical_realm
from .tokens import DEFAULT_SKEW_SECONDS, TokenEntry, TokenStore

# Message names: the one place on the Python side.
HELLO = "hello"
SYNC_TOKENS = "sync-tokens"
SET_REALM_TOKEN = "set-realm-token"
REMOVE_REALM_TOKEN = "remove-realm-token"
CLEAR_TOKENS = "clear-tokens"
WORKER_TICKET = "worker-ticket"
REQUEST_REALM_TOKEN = "request-realm-token"
PENDING = "pending"
ACK = "ack"

MESSAGE_NAMES = {
    "HELLO": HELLO,
    "SYNC_TOKENS": SYNC_TOKENS,
    "SET_REALM_TOKEN": SET_REALM_TOKEN,
    "REMOVE_REALM_TOKEN": REMOVE_REALM_TOKEN,
    "CLEAR_TOKENS": CLEAR_TOKENS,
    "WORKER_TICKET": WORKER_TICKET,
    "REQUEST_REALM_TOKEN": REQUEST_REALM_TOKEN,
    "PENDING": PENDING,
    "ACK": ACK,
}



class Redirect(StrEnum):
    """What a request carrying a realm's token does on a redirect: ``fetch``'s ``redirect``
    option, sent as is to the worker (the ``redirect`` field; ``sw/sw.js`` has the same values).

    Chromium keeps ``Authorization`` on a same-origin redirect (a cross-origin one drops it),
    so for a realm narrower than its origin a redirect could take the token to a sibling path:
    such realms fail on a redirect by default."""

    FOLLOW = "follow"
    ERROR = "error"


PROTOCOL_VERSION = 3  # the worker sends it in every ack; the loader warns once on a mismatch
ANSWER_BUDGET_MS = 200
PENDING_BUDGET_MS = 3000
ASK_OTHERS_AFTER_MS = 100  # below ANSWER_BUDGET_MS: other windows get a chance to answer
ACK_TIMEOUT_MS = 2000  # the loader's bound on waiting for a registration or a worker's ack
STATE_CACHE = "pyauth-web-state-v2"  # the worker's saved state (Cache Storage)
RECORD_DB = "pyauth-web-session"  # IndexedDB: the session records (pyauth_web/record.py)
RECORD_STORE = "records"  # its object store: one record (JSON text) per app
RECORD_CHANNEL = "pyauth-web/session"  # BroadcastChannel: record notices (pages and the worker)
RECORD_NOTICE = "record"
# Page events (window CustomEvents): the runtime dispatches all three, the loader EVENT too
AUTH_ERROR_EVENT = "console:auth-error"
REFRESHED_EVENT = "pyauth-web:token-refreshed"
EVENT = "pyauth-web:event"
MAX_URL_LENGTH = 8192



def channel_name(app: str) -> str:
    """The app's ``BroadcastChannel`` (tabs relay failure episodes on it)."""
    return f"pyauth-web:{app}"


def lock_name(app: str, realm: str) -> str:
    """The Web Lock a tab holds while it refreshes ``realm`` (one per app and realm)."""
    return f"pyauth-web:{app}:{realm}"


Message = dict[str, object]
"""A message as sent: JSON-like values only (the adapter converts it with ``to_js``)."""


def parse_token_request(data: object) -> str | None:
    """The ``requestURL`` of a well-formed ``request-realm-token`` message, else ``None``."""
    if not isinstance(data, dict) or data.get("type") != REQUEST_REALM_TOKEN:
        return None
    url = data.get("requestURL")
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        return None
    return url


def asks_for_key_check(data: object) -> bool:
    """A token request from a worker that found no DPoP key for the app's bound token: the page
    checks the key (and reports a lost one) before it answers."""
    return isinstance(data, dict) and data.get("keyMissing") is True


def redirect_mode(realm: str, overrides: Mapping[str, Redirect] | None = None) -> Redirect:
    """How requests carrying ``realm``'s token treat redirects: the host's choice for that realm,
    else ``'follow'`` for a realm that is a whole origin (a same-origin redirect stays inside it;
    the browser drops the header on a cross-origin one) and ``'error'`` for a path-scoped realm."""
    chosen = (overrides or {}).get(realm)
    if chosen is not None:
        return Redirect(chosen)
    return Redirect.FOLLOW if urlsplit(realm).path == "/" else Redirect.ERROR


def check_redirects(
    value: object, canonical: Canonicaliser = canonical_realm
) -> dict[str, Redirect]:
    """``configure({redirects: {realmURL: 'follow'|'error'}})``, canonical realms; raises
    ``ValueError`` naming the bad entry."""
    if not isinstance(value, Mapping):
        raise ValueError(f"redirects must map realmURL -> 'follow'|'error', got {value!r}")
    out = {}
    for realm, mode in value.items():
        try:
            chosen = Redirect(mode)
        except ValueError:
            raise ValueError(
                f"redirects[{realm!r}] must be 'follow' or 'error', got {mode!r}"
            ) from None
        try:
            out[canonical(str(realm))] = chosen
        except ValueError as exc:
            raise ValueError(f"redirects: {exc}") from None
    return out


def pending(app: str) -> Message:
    return {"type": PENDING, "app": app}


def record_notice(app: str, version: int, logout: bool) -> Message:
    return {"type": RECORD_NOTICE, "app": app, "version": version, "logout": logout}


def parse_record_notice(data: object, app: str) -> tuple[int, bool] | None:
    """``(version, logout)`` of a well-formed notice for ``app``, else ``None``."""
    if not isinstance(data, dict) or data.get("type") != RECORD_NOTICE or data.get("app") != app:
        return None
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        return None
    return version, data.get("logout") is True


def token_reply(
    entry: TokenEntry | None,
    app: str,
    redirects: Mapping[str, Redirect] | None = None,
    skew: float = DEFAULT_SKEW_SECONDS,
    dpop: bool = False,
    version: int = 0,
) -> Message:
    """The answer to ``request-realm-token``. Like every message that gives the worker a token,
    it carries the page's skew (the worker has no default of its own) and the record version
    the token was read at."""
    if entry is None:
        return {"app": app}
    return {
        "app": app,
        "version": version,
        "realmURL": entry.realm,
        "token": entry.token,
        "exp": entry.exp,
        "redirect": redirect_mode(entry.realm, redirects),
        "dpop": dpop,
        "skew": skew,
    }


class Order(Protocol):
    """The order of the session that messages carry (:class:`pyauth_web.record.SessionRecord`)."""

    version: int
    cleared: int
    since: dict[str, int]


def sync_tokens(
    store: TokenStore,
    realms: list[str] | tuple[str, ...] = (),
    redirects: Mapping[str, Redirect] | None = None,
    dpop: Iterable[str] = frozenset(),
    order: Order | None = None,
) -> Message:
    """Full state for the worker; ``realms`` (the configured ones) say which origins to ask for;
    ``dpop``: the realms whose tokens are DPoP-bound (with a token or not); ``order``: the record
    the tokens were read from."""
    entries = store.entries()
    return {
        "type": SYNC_TOKENS,
        "version": order.version if order else 0,
        "cleared": order.cleared if order else 0,
        "since": dict(order.since) if order else {},
        "realms": sorted(set(realms) | set(entries)),
        "tokens": {r: e.token for r, e in entries.items()},
        "expires": {r: e.exp for r, e in entries.items()},
        "redirects": {r: redirect_mode(r, redirects) for r in entries},
        "dpop": {r: True for r in sorted(set(dpop))},
        "skew": store.skew,
    }


def set_realm_token(
    entry: TokenEntry,
    skew: float,
    redirects: Mapping[str, Redirect] | None = None,
    dpop: bool = False,
    order: Order | None = None,
) -> Message:
    return {
        "type": SET_REALM_TOKEN,
        "version": order.version if order else 0,
        "since": order.since.get(entry.realm, 0) if order else 0,
        "realmURL": entry.realm,
        "token": entry.token,
        "exp": entry.exp,
        "redirect": redirect_mode(entry.realm, redirects),
        "dpop": dpop,
        "skew": skew,
    }


def remove_realm_token(realm: str, version: int = 0) -> Message:
    return {"type": REMOVE_REALM_TOKEN, "version": version, "realmURL": realm}


def clear_tokens(version: int = 0) -> Message:
    return {"type": CLEAR_TOKENS, "version": version}
