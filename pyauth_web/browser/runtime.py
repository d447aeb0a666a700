"""Binds the sans-I/O core to the browser: localStorage, the service worker, refresh, tabs.

``start()`` is called once by the loader (``web/pyauth-web.js``) and returns the
:class:`BrowserRuntime` whose methods the JS API (``window.pyauthWeb``) wraps; Python code in
the page gets the same object from :func:`current`.

Proxy lifetimes: the loader holds the one PyProxy of the runtime for the page's life (it calls
``close()`` to end it); event listeners go through ``pyodide.ffi.wrappers`` and are removed in
``close()``; the BroadcastChannel is closed there too; everything else crosses as converted
values (``to_js``), never as long-lived proxies.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
from typing import Any

import js
from pyodide.ffi import JsProxy, create_proxy, to_js
from pyodide.ffi.wrappers import add_event_listener, remove_event_listener

from pyauth_web import oauth, protocol
from pyauth_web.browser import fetch as auth_fetch
from pyauth_web.browser import urls
from pyauth_web.browser.locks import web_lock
from pyauth_web.browser.refreshers import (
    OAuthRefresher,
    RefreshTokenStorage,
    callback_refresher,
    refresh_key,
    url_refresher,
)
from pyauth_web.browser.sse import StreamHandle, start_stream
from pyauth_web.browser.ws import RotatingSocket
from pyauth_web.prewarm import Prewarm
from pyauth_web.refresh import (
    DEFAULT_LOCK_TIMEOUT,
    DEFAULT_REFRESH_JITTER,
    DEFAULT_REFRESH_TIMEOUT,
    BackoffPolicy,
    Reason,
    RefreshCoordinator,
    RefreshError,
    check_timeout,
    refresh_at,
)
from pyauth_web.tokens import (
    DEFAULT_SKEW_SECONDS,
    DEFAULT_STORAGE_KEY,
    TokenEntry,
    TokenStore,
    normalize_realm,
)

AUTH_ERROR_EVENT = "console:auth-error"
REFRESHED_EVENT = "pyauth-web:token-refreshed"
MAX_TIMER = 30.0  # s: the proactive timer re-checks the wall clock at least this often
WAKE_EVENTS = (
    ("document", "visibilitychange"),
    ("window", "focus"),
    ("window", "pageshow"),
    ("window", "online"),
)
_current: BrowserRuntime | None = None


def _js(value: Any) -> Any:
    """A plain JS value (objects, not Maps) for postMessage / structured clone / events."""
    return to_js(value, dict_converter=js.Object.fromEntries)


def _number(value: Any, default: float) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
    return float(value) if ok else default


def _backoff(retry: Any) -> BackoffPolicy:
    """``configure({retry: {attempts, base, cap}})`` as a policy; a one-line error naming it."""
    retry = retry.to_py() if isinstance(retry, JsProxy) else retry
    if retry is None:
        retry = {}
    if not isinstance(retry, dict):
        raise ValueError(f"retry must be an object {{attempts, base, cap}}, got {retry!r}")
    fields = {k: retry[k] for k in ("attempts", "base", "cap") if k in retry}
    attempts = fields.get("attempts", 1)
    if isinstance(attempts, bool) or not isinstance(attempts, int):
        raise ValueError(f"retry.attempts must be a whole number >= 1, got {attempts!r}")
    for name in ("base", "cap"):
        value = fields.get(name, 0.0)
        if isinstance(value, bool) or not isinstance(value, int | float) or value >= math.inf:
            raise ValueError(f"retry.{name} must be a finite number of seconds, got {value!r}")
    try:
        return BackoffPolicy(**fields)
    except ValueError as exc:
        raise ValueError(f"retry: {exc}, got {retry!r}") from None


class BrowserRuntime:
    def __init__(self, config: dict[str, Any], post_to_worker: JsProxy) -> None:
        self.storage_key: str = config.get("storageKey") or DEFAULT_STORAGE_KEY
        self.store = TokenStore(skew=_number(config.get("skew"), DEFAULT_SKEW_SECONDS))
        self.jitter = DEFAULT_REFRESH_JITTER
        self.realms: list[str] = []
        for realm in config.get("realms") or []:
            try:
                self.realms.append(normalize_realm(realm))
            except ValueError as exc:
                self._warn(f"ignoring configured realm: {exc}")
        self._post = post_to_worker
        self.redirects: dict[str, protocol.Redirect] = {}  # realm -> mode (host overrides)
        self._raw: str | None = None  # the stored session as last read or written
        self.counters = {
            "token_requests": 0,
            "answered_with_token": 0,
            "ignored_messages": 0,
            "refreshes": 0,
        }
        self._rng = random.Random()
        # realm -> (token, when to refresh it proactively); the jitter is drawn once per token
        self._refresh_due: dict[str, tuple[str, float]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self.prewarm = Prewarm()
        self._prewarm_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.oauth: OAuthRefresher | None = None
        self._refresher: Any = None
        self.has_refresher = False
        self.coordinator = self._make_coordinator(None, BackoffPolicy())
        if config.get("refreshURL"):
            self.configure({"refreshURL": config["refreshURL"]})
        self._channel = js.BroadcastChannel.new(f"pyauth-web:{self.storage_key}")
        self._channel_listener = create_proxy(self._on_channel)
        self._channel.addEventListener("message", self._channel_listener)
        add_event_listener(js.window, "storage", self._on_storage)
        for target, name in WAKE_EVENTS:
            add_event_listener(getattr(js, target), name, self._on_wake)
        self._reload(report=True)
        self._schedule()
        self.sync_worker()

    # -- configuration ------------------------------------------------------------------------
    def _make_coordinator(
        self,
        refresher: Any,
        backoff: BackoffPolicy,
        refresh_timeout: float = DEFAULT_REFRESH_TIMEOUT,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    ) -> RefreshCoordinator:
        async def no_refresher(realm: str) -> str:
            raise RefreshError(realm, Reason.NO_REFRESHER)

        return RefreshCoordinator(
            refresher or no_refresher,
            clock=self.store.clock,
            rng=self._rng,
            backoff=backoff,
            lock=lambda realm: web_lock(f"pyauth-web:{self.storage_key}:{realm}"),
            reread=self._reread,
            skew=self.store.skew,  # configure() makes a new coordinator when skew changes
            on_success=self._refreshed,
            on_failure=self._failed,
            refresh_timeout=refresh_timeout,
            lock_timeout=lock_timeout,
        )

    def configure(self, options: Any) -> None:
        """Set the refresher and policy. ``options`` (a JS object or dict) may hold:
        ``refresh`` (async host callback ``(realmURL) => token``), ``refreshURL``,
        ``oauth: {tokenEndpoint, clientId, scope?}``, ``skew``, ``jitter``,
        ``retry: {attempts, base, cap}``, ``refreshTimeout`` (one attempt, default 10) and
        ``lockTimeout`` (waiting for the cross-tab lock, default 15; must exceed
        ``refreshTimeout``), all in seconds.

        Everything is checked before anything changes: a bad option raises a one-line
        ``ValueError`` naming it, and the previous configuration stays in force."""
        opts = options.to_py(depth=1) if isinstance(options, JsProxy) else dict(options)
        refresher: Any = self._refresher  # options without a refresher keep the current one
        new_oauth: OAuthRefresher | None = None
        if opts.get("refresh") is not None:
            if not callable(opts["refresh"]):
                raise ValueError(f"refresh must be a function, got {opts['refresh']!r}")
            refresher = callback_refresher(opts["refresh"])
        elif opts.get("refreshURL") is not None:
            refresher = url_refresher(oauth.check_endpoint(opts["refreshURL"], "refreshURL"))
        elif opts.get("oauth") is not None:
            o = opts["oauth"]
            o = o.to_py() if isinstance(o, JsProxy) else o
            if not isinstance(o, dict):
                raise ValueError(f"oauth must be an object {{tokenEndpoint, clientId}}, got {o!r}")
            scope = o.get("scope")
            if scope is not None and not isinstance(scope, str):
                raise ValueError(f"oauth.scope must be a string, got {scope!r}")
            new_oauth = OAuthRefresher(
                oauth.check_endpoint(o.get("tokenEndpoint"), "oauth.tokenEndpoint"),
                oauth.check_client_id(o.get("clientId"), "oauth.clientId"),
                self._refresh_tokens(),
                self._session_token,
                scope or None,
            )
            refresher = new_oauth
        refresh_timeout = self.coordinator.refresh_timeout
        lock_timeout = self.coordinator.lock_timeout
        if "refreshTimeout" in opts:
            refresh_timeout = check_timeout(opts["refreshTimeout"], "refreshTimeout")
        if "lockTimeout" in opts:
            lock_timeout = check_timeout(opts["lockTimeout"], "lockTimeout")
        if lock_timeout <= refresh_timeout:
            raise ValueError(
                f"lockTimeout ({lock_timeout:g} s) must exceed refreshTimeout "
                f"({refresh_timeout:g} s): a tab waiting for the lock must outlast one attempt"
            )
        backoff = _backoff(opts.get("retry"))
        redirects = self.redirects
        if "redirects" in opts:
            value = opts["redirects"]
            redirects = protocol.check_redirects(
                value.to_py() if isinstance(value, JsProxy) else value
            )
        # Checked: apply.
        self.redirects = redirects
        if new_oauth is not None:
            self.oauth = new_oauth
        if "skew" in opts:
            self.store.skew = _number(opts["skew"], self.store.skew)
        if "jitter" in opts:
            self.jitter = _number(opts["jitter"], self.jitter)
        self.coordinator.cancel_all(Reason.RECONFIGURED)
        self.coordinator = self._make_coordinator(refresher, backoff, refresh_timeout, lock_timeout)
        self._refresher = refresher
        self.has_refresher = refresher is not None
        self._refresh_due.clear()  # skew or jitter may have changed
        self._plan_all()
        self._schedule()
        self.sync_worker()

    def _refresh_tokens(self) -> RefreshTokenStorage:
        """The realms' refresh tokens in ``localStorage`` (whether or not this tab configured
        OAuth: logout and new sessions change them in every tab)."""
        return RefreshTokenStorage(refresh_key(self.storage_key))

    def _session_token(self, realm: str) -> str | None:
        """The realm's access token in shared storage now (the OAuth refresher checks that a
        refresh token belongs to it; called under the cross-tab lock)."""
        self._reload()
        return self._current_token(realm)

    # -- storage ------------------------------------------------------------------------------
    def _read_raw(self) -> str | None:
        raw = js.localStorage.getItem(self.storage_key)
        return raw if isinstance(raw, str) else None

    def _reload(self, report: bool = False) -> None:
        self._raw = self._read_raw()
        problems = self.store.loads(self._raw)
        if problems and report:
            self._warn("; ".join(problems))
        self._plan_all()

    def _persist(self) -> None:
        if self.store.entries():
            self._raw = self.store.dumps()
            js.localStorage.setItem(self.storage_key, self._raw)
        else:
            self._raw = None
            js.localStorage.removeItem(self.storage_key)

    def _on_storage(self, event: Any) -> None:
        # Another tab changed the session (or cleared all storage: key is null).
        if isinstance(event.key, str) and event.key != self.storage_key:
            return
        self._storage_changed()

    def _reload_if_changed(self) -> None:
        """Notice a write the host made in this tab (no ``storage`` event fires there)."""
        if self._read_raw() != self._raw:
            self._storage_changed()

    def reload(self) -> None:
        """``pyauthWeb.reload()``: re-read the session now and tell the worker."""
        self._storage_changed()

    def _storage_changed(self) -> None:
        """The stored session changed outside this runtime (the host, or another tab): follow it
        and tell the worker. Every tab that notices tells it; the worker applies a sync only when
        it changes the app's state. Storage is the truth, so nothing stale comes back."""
        before = self.store.entries()
        self._reload()
        after = self.store.entries()
        # A session the host removed takes its refresh token with it. (A replaced session keeps
        # its entry, unused: the pairing refuses it, and only a refresh under the lock may
        # rewrite a pairing.)
        self._refresh_tokens().keep_only(set(after))
        if any(realm not in after for realm in before):  # logout or removal in another tab
            self.coordinator.cancel_all(Reason.LOGGED_OUT)
        for realm, entry in after.items():
            if before.get(realm) != entry:
                self.coordinator.reset(realm)
                if realm in before:  # a newer token for a realm we had: hosts may refetch
                    self._dispatch(REFRESHED_EVENT, {"realmURL": realm})
        self._schedule()
        self.sync_worker()
        self._emit("storage-sync", realms=list(after))

    # -- worker -------------------------------------------------------------------------------
    def sync_worker(self) -> None:
        """Send the app's whole state (as stored now) to the worker."""
        if self._read_raw() != self._raw:
            self._reload()
        self._post(_js(protocol.sync_tokens(self.store, self.realms, self.redirects)))

    def handle_sw_message(self, data: Any, port: Any = None) -> None:
        """Answer a service worker's ``request-realm-token``; ignore anything else."""
        try:
            message = data.to_py() if isinstance(data, JsProxy) else data
        except Exception:  # noqa: BLE001 - a value we cannot convert is just ignored
            message = None
        url = protocol.parse_token_request(message)
        if url is None or port is None or not hasattr(port, "postMessage"):
            self.counters["ignored_messages"] += 1
            return
        self.counters["token_requests"] += 1
        self._reload_if_changed()  # never answer from a session the host replaced or removed
        entry = self.store.lookup(url)
        realm = self.store.realm_for(url) if entry is None else None  # only on a miss
        if realm is not None and self._can_refresh(realm):
            port.postMessage(_js(protocol.pending(self.storage_key)))
            self._spawn(self._answer_after_refresh(url, realm, port, self._current_token(realm)))
            return
        self._reply(port, entry)

    async def _answer_after_refresh(
        self, url: str, realm: str, port: Any, stale: str | None
    ) -> None:
        try:
            await self._refresh(realm, stale)
        except RefreshError:
            pass
        self._reply(port, self.store.lookup(url))  # after a logout this is {}: no resurrection

    def _reply(self, port: Any, entry: TokenEntry | None) -> None:
        if entry is not None:
            self.counters["answered_with_token"] += 1
        port.postMessage(_js(protocol.token_reply(entry, self.storage_key, self.redirects)))

    # -- refresh ------------------------------------------------------------------------------
    def _can_refresh(self, realm: str) -> bool:
        return self.has_refresher and self.coordinator.failed(realm) is None

    def _current_token(self, realm: str) -> str | None:
        entry = self.store.entries().get(realm)
        return entry.token if entry else None

    async def _refresh(self, realm: str, stale: str | None = None) -> str:
        """Refresh ``realm``'s token ``stale`` (default: the one held now). Pass the token seen
        when the refresh was decided: if a sibling replaced it meanwhile, that one is used."""
        return await self.coordinator.refresh(realm, stale or self._current_token(realm))

    async def _reread(self, realm: str) -> str | None:
        self._reload()
        return self._current_token(realm)

    def _refreshed(self, realm: str, token: str) -> None:
        """Store a refreshed token (runs under the cross-tab lock)."""
        self._reload()
        if realm not in self.store.entries():  # logged out in another tab meanwhile
            raise RefreshError(realm, Reason.LOGGED_OUT)
        entry = self.store.set(realm, token)
        self._persist()
        self.counters["refreshes"] += 1
        self._post(_js(protocol.set_realm_token(entry, self.store.skew, self.redirects)))
        self._plan(entry)
        self._schedule()
        self._emit("token-refreshed", realmURL=realm, exp=entry.exp)
        self._dispatch(REFRESHED_EVENT, {"realmURL": realm})

    def _failed(self, error: RefreshError) -> None:
        """One failure episode: tell the host once, and the other tabs once."""
        detail = self._report_auth_error(error.realm, error.reason, error.status)
        if not getattr(error, "relayed", False):
            self._channel.postMessage(_js({"type": "auth-error", **detail}))

    def _failed_stream(self, url: str, reason: str) -> None:
        """A stream gave up (e.g. too many WebSocket rotations): tell this tab's host once."""
        self._report_auth_error(self.store.realm_for(url) or url, reason, None)

    def _report_auth_error(self, realm: str, reason: str, status: int | None) -> dict[str, Any]:
        detail = {"realmURL": realm, "reason": reason, "status": status, "recoverable": False}
        self._dispatch(AUTH_ERROR_EVENT, detail)
        self._emit("auth-error", **detail)
        return detail

    def _on_channel(self, event: Any) -> None:
        try:
            msg = event.data.to_py()
        except Exception:  # noqa: BLE001 - foreign message shapes are ignored
            return
        if not isinstance(msg, dict) or msg.get("type") != "auth-error":
            return
        realm = msg.get("realmURL")
        if not isinstance(realm, str) or realm not in self.store.entries():
            return
        status = msg.get("status")
        error = RefreshError(
            realm,
            str(msg.get("reason") or Reason.REFRESH_FAILED),
            status=status if isinstance(status, int) else None,
        )
        error.relayed = True
        self.coordinator.fail(error)

    def _plan(self, entry: TokenEntry) -> None:
        planned = self._refresh_due.get(entry.realm)
        if planned is not None and planned[0] == entry.token:
            return
        due = refresh_at(entry.exp, self.store.skew, self.jitter, self._rng)
        if due is None or not math.isfinite(due):  # never a timer that cannot be compared
            self._refresh_due.pop(entry.realm, None)
        else:
            self._refresh_due[entry.realm] = (entry.token, due)

    def _plan_all(self) -> None:
        entries = self.store.entries()
        for realm in [r for r in self._refresh_due if r not in entries]:
            del self._refresh_due[realm]
        for entry in entries.values():
            self._plan(entry)

    def _schedule(self, after_check: bool = False) -> None:
        """One timer for the earliest proactive refresh (re-checked on every wake-up).

        Long timers drift or freeze in background tabs, so it fires at least every 30 s and
        compares with the wall clock. Right after a check, an overdue realm (hidden tab, or a
        refresh in flight) is looked at again in 30 s, not in a busy loop; failed realms wait
        for a new token."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        dues = [due for realm, (_, due) in self._refresh_due.items() if self._can_refresh(realm)]
        if not dues:
            return
        delay = min(dues) - self.store.clock()
        if delay <= 0:
            delay = MAX_TIMER if after_check else 0.0
        self._timer = asyncio.get_event_loop().call_later(min(delay, MAX_TIMER), self._check_due)

    def _check_due(self) -> None:
        """The proactive timer. A hidden tab does not refresh ahead of time: nobody is looking,
        and the pre-warm refreshes what is stale when it becomes visible again."""
        self._timer = None
        now = self.store.clock()
        if js.document.visibilityState != "hidden":
            for realm, (_, due) in list(self._refresh_due.items()):
                if now >= due and not self.coordinator.in_flight(realm):
                    self._start_refresh(realm)
        self._schedule(after_check=True)

    def _start_refresh(self, realm: str) -> None:
        if self._can_refresh(realm):
            self._spawn(self._proactive(realm, self._current_token(realm)))

    async def _proactive(self, realm: str, stale: str | None) -> None:
        try:
            await self._refresh(realm, stale)
        except RefreshError:
            pass  # reported once through console:auth-error

    def _on_wake(self, event: Any = None) -> None:
        """focus / visibilitychange / pageshow / online: debounce, then pre-warm."""
        self._reload_if_changed()
        now = self.store.clock()
        deadline = self.prewarm.event(now, js.document.visibilityState != "hidden")
        self._schedule()  # timers may have been frozen: re-arm against the wall clock
        if deadline is not None:
            self._arm_prewarm(deadline - now)

    def _arm_prewarm(self, delay: float) -> None:
        if self._prewarm_timer is not None:
            self._prewarm_timer.cancel()
        loop = asyncio.get_event_loop()
        self._prewarm_timer = loop.call_later(max(0.001, delay), self._run_prewarm)

    def _run_prewarm(self) -> None:
        self._prewarm_timer = None
        now = self.store.clock()
        deadline = self.prewarm.deadline
        if deadline is not None and now < deadline:  # timers may fire a little early
            self._arm_prewarm(deadline - now)
            return
        if not self.prewarm.due(now):
            return
        stale = [
            e.realm for e in self.store.entries().values() if not e.is_fresh(now, self.store.skew)
        ]
        self._emit("prewarm", realms=stale)
        for realm in stale:
            self._start_refresh(realm)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- API (wrapped by window.pyauthWeb) ---------------------------------------------------
    def set_token(self, realm_url: str, token: str, refresh_token: str | None = None) -> None:
        """A new session for the realm. Its refresh token, if any, is stored paired with
        ``token``; without one, the realm's previous refresh token is dropped (it belonged to
        the previous session, maybe another user's)."""
        if refresh_token is not None and self.oauth is None:
            raise ValueError("call configure({oauth: ...}) before passing a refresh token")
        if refresh_token is not None and (not isinstance(refresh_token, str) or not refresh_token):
            raise ValueError(f"refreshToken must be a non-empty string, got {refresh_token!r}")
        entry = self.store.set(realm_url, token)
        self.coordinator.reset(entry.realm)
        self._persist()
        self._refresh_tokens().set(entry.realm, refresh_token, entry.token)
        self._post(_js(protocol.set_realm_token(entry, self.store.skew, self.redirects)))
        self._plan(entry)
        self._schedule()
        self._emit("token-set", realmURL=entry.realm, exp=entry.exp)

    def remove_token(self, realm_url: str) -> None:
        realm = normalize_realm(realm_url)
        self.store.remove(realm)
        self.coordinator.cancel_all(Reason.LOGGED_OUT)
        self.coordinator.reset(realm)
        self._persist()
        self._refresh_tokens().remove(realm)  # every credential of the realm, in any tab
        self._refresh_due.pop(realm, None)
        self._post(_js(protocol.remove_realm_token(realm)))
        self._emit("token-removed", realmURL=realm)

    def clear_tokens(self) -> None:
        self.store.clear()
        self.coordinator.clear()
        self._persist()
        self._refresh_tokens().clear()  # every refresh token, whatever this tab configured
        self._refresh_due.clear()
        self._schedule()
        self._post(_js(protocol.clear_tokens()))
        self._emit("tokens-cleared")

    def redirect_for(self, url: str | None) -> str:
        """``fetch``'s ``redirect`` option for a request carrying the token for ``url``: the
        realm's redirect mode ('error' keeps a redirect from taking the token to a sibling path
        of the origin; see :func:`pyauth_web.protocol.redirect_mode`)."""
        realm = self.store.realm_for(url) if url else None
        if realm is not None and protocol.redirect_mode(realm, self.redirects) == "error":
            return "error"
        return "follow"

    async def get_token(self, url: Any) -> str | None:
        """The fresh token for ``url``; refreshes first when it is stale and a refresher is
        configured; ``None`` when no realm holds a token for it. Raises on refresh failure.

        Answers for ``url`` as the browser would send it (resolved against the page and
        canonicalised by its URL parser; a ws(s) URL as its http(s) equivalent): a URL that
        does not parse, or is not http(s)/ws(s), has no token."""
        self._reload_if_changed()
        url = urls.for_matching(url)
        if url is None:
            return None
        entry = self.store.lookup(url)
        if entry is not None:
            return entry.token
        realm = self.store.realm_for(url)
        if realm is None or not self.has_refresher:
            return None
        await self._refresh(realm)
        entry = self.store.lookup(url)
        return entry.token if entry else None

    async def fetch(self, input: Any, init: Any = None, transport: Any = None) -> Any:
        """``pyauthWeb.fetch`` / ``wrapFetch``: see :mod:`pyauth_web.browser.fetch`."""
        return await auth_fetch.js_fetch(self, input, init, transport)

    def stream(self, url: str, options: Any = None) -> StreamHandle:
        """``pyauthWeb.stream(url, {onEvent, onStateChange, resync})``: SSE over fetch."""
        return start_stream(self, url, options)

    def socket(self, url: str, options: Any = None) -> RotatingSocket:
        """``pyauthWeb.socket(url, {onMessage, onStateChange, tokenIn})``: WebSocket with
        token rotation (see :mod:`pyauth_web.browser.ws`)."""
        opts = options.to_py(depth=1) if options is not None else {}
        sock = RotatingSocket(
            self,
            url,
            token_in=str(opts.get("tokenIn") or "message"),
            on_message=opts.get("onMessage"),
            on_state=opts.get("onStateChange"),
        )
        self._spawn(sock.start())
        return sock

    def state_json(self) -> str:
        """The state as JSON; always valid JSON (a non-finite number becomes ``null``)."""

        def finite(value: Any) -> Any:
            if isinstance(value, float) and not math.isfinite(value):
                return None
            if isinstance(value, dict):
                return {k: finite(v) for k, v in value.items()}
            if isinstance(value, list):
                return [finite(v) for v in value]
            return value

        now = self.store.clock()
        state = finite(
            {
                "realms": self.realms,
                "skew": self.store.skew,
                "tokens": [
                    {
                        "realmURL": e.realm,
                        "exp": e.exp,
                        "fresh": e.is_fresh(now, self.store.skew),
                        "refreshAt": self._refresh_due.get(e.realm, (None, None))[1],
                        "failed": bool(self.coordinator.failed(e.realm)),
                    }
                    for e in self.store.entries().values()
                ],
                "counters": self.counters,
            }
        )
        return json.dumps(state, allow_nan=False)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.coordinator.cancel_all(Reason.CLOSED)
        remove_event_listener(js.window, "storage", self._on_storage)
        for target, name in WAKE_EVENTS:
            remove_event_listener(getattr(js, target), name, self._on_wake)
        if self._prewarm_timer is not None:
            self._prewarm_timer.cancel()
        self._channel.removeEventListener("message", self._channel_listener)
        self._channel.close()
        self._channel_listener.destroy()

    # -- reporting -----------------------------------------------------------------------------
    def _dispatch(self, name: str, detail: dict[str, Any]) -> None:
        js.window.dispatchEvent(js.CustomEvent.new(name, _js({"detail": detail})))

    def _emit(self, kind: str, **detail: Any) -> None:
        self._dispatch("pyauth-web:event", {**detail, "kind": kind})

    def _warn(self, message: str) -> None:
        js.console.warn(f"pyauth-web: {message}")
        self._emit("warning", message=message)


def start(config: Any, post_to_worker: JsProxy) -> BrowserRuntime:
    global _current
    cfg = config.to_py() if isinstance(config, JsProxy) else dict(config)
    _current = BrowserRuntime(cfg, post_to_worker)
    return _current


def current() -> BrowserRuntime:
    """The page's runtime (for Python code in the page), once the loader has started it."""
    if _current is None:
        raise RuntimeError("pyauth-web runtime not started (wait for pyauthWeb.ready)")
    return _current
