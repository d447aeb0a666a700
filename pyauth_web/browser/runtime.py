"""Binds the sans-I/O core to the browser: localStorage, the service worker, storage events.

``start()`` is called once by the loader (``web/pyauth-web.js``) and returns the
:class:`BrowserRuntime` whose methods the JS API (``window.pyauthWeb``) wraps.

Proxy lifetimes: the loader holds the one PyProxy of the runtime for the page's life (it calls
``close()`` to end it); event listeners go through ``pyodide.ffi.wrappers`` and are removed in
``close()``; everything else crosses as converted values (``to_js``), never as proxies.
"""

from __future__ import annotations

import json
from typing import Any

import js
from pyodide.ffi import JsProxy, to_js
from pyodide.ffi.wrappers import add_event_listener, remove_event_listener

from pyauth_web import protocol
from pyauth_web.tokens import DEFAULT_SKEW_SECONDS, DEFAULT_STORAGE_KEY, TokenStore, normalize_realm


def _js(value: Any) -> Any:
    """A plain JS value (objects, not Maps) for postMessage / structured clone."""
    return to_js(value, dict_converter=js.Object.fromEntries)


class BrowserRuntime:
    def __init__(self, config: dict[str, Any], post_to_worker: JsProxy) -> None:
        self.storage_key: str = config.get("storageKey") or DEFAULT_STORAGE_KEY
        skew = config.get("skew")
        self.store = TokenStore(
            skew=float(skew)
            if isinstance(skew, int | float) and skew >= 0
            else DEFAULT_SKEW_SECONDS
        )
        self.realms = []
        for realm in config.get("realms") or []:
            try:
                self.realms.append(normalize_realm(realm))
            except ValueError as exc:
                self._warn(f"ignoring configured realm: {exc}")
        self._post = post_to_worker
        self.counters = {"token_requests": 0, "answered_with_token": 0, "ignored_messages": 0}
        self._reload(report=True)
        add_event_listener(js.window, "storage", self._on_storage)
        self.sync_worker()

    # -- storage ------------------------------------------------------------------------------
    def _reload(self, report: bool = False) -> None:
        raw = js.localStorage.getItem(self.storage_key)
        problems = self.store.loads(raw if isinstance(raw, str) else None)
        if problems and report:
            self._warn("; ".join(problems))

    def _persist(self) -> None:
        if self.store.entries():
            js.localStorage.setItem(self.storage_key, self.store.dumps())
        else:
            js.localStorage.removeItem(self.storage_key)

    def _on_storage(self, event: Any) -> None:
        # Another tab changed the session (or cleared all storage: key is null).
        if not isinstance(event.key, str) or event.key == self.storage_key:
            self._reload()
            self._emit("storage-sync", realms=list(self.store.entries()))

    # -- worker -------------------------------------------------------------------------------
    def sync_worker(self) -> None:
        self._post(_js(protocol.sync_tokens(self.store, self.realms)))

    def handle_sw_message(self, data: Any, port: Any = None) -> None:
        """Answer a service worker's ``request-realm-token``; ignore anything else."""
        try:
            message = data.to_py() if isinstance(data, JsProxy) else data
        except Exception:  # noqa: BLE001 - a value we cannot convert is just ignored
            message = None
        reply = protocol.answer_token_request(self.store, message)
        if reply is None or port is None or not hasattr(port, "postMessage"):
            self.counters["ignored_messages"] += 1
            return
        self.counters["token_requests"] += 1
        if reply:
            self.counters["answered_with_token"] += 1
        port.postMessage(_js(reply))

    # -- API (wrapped by window.pyauthWeb) ---------------------------------------------------
    def set_token(self, realm_url: str, token: str) -> None:
        entry = self.store.set(realm_url, token)
        self._persist()
        self._post(_js(protocol.set_realm_token(entry, self.store.skew)))
        self._emit("token-set", realmURL=entry.realm, exp=entry.exp)

    def remove_token(self, realm_url: str) -> None:
        realm = normalize_realm(realm_url)
        self.store.remove(realm)
        self._persist()
        self._post(_js(protocol.remove_realm_token(realm)))
        self._emit("token-removed", realmURL=realm)

    def clear_tokens(self) -> None:
        self.store.clear()
        self._persist()
        self._post(_js(protocol.clear_tokens()))
        self._emit("tokens-cleared")

    def get_token(self, url: str) -> str | None:
        entry = self.store.lookup(url)
        return entry.token if entry else None

    def state_json(self) -> str:
        now = self.store.clock()
        return json.dumps(
            {
                "realms": self.realms,
                "skew": self.store.skew,
                "tokens": [
                    {"realmURL": e.realm, "exp": e.exp, "fresh": e.is_fresh(now, self.store.skew)}
                    for e in self.store.entries().values()
                ],
                "counters": self.counters,
            }
        )

    def close(self) -> None:
        remove_event_listener(js.window, "storage", self._on_storage)

    # -- reporting -----------------------------------------------------------------------------
    def _emit(self, kind: str, **detail: Any) -> None:
        detail["kind"] = kind
        event = js.CustomEvent.new("pyauth-web:event", _js({"detail": detail}))
        js.window.dispatchEvent(event)

    def _warn(self, message: str) -> None:
        js.console.warn(f"pyauth-web: {message}")
        self._emit("warning", message=message)


def start(config: Any, post_to_worker: JsProxy) -> BrowserRuntime:
    cfg = config.to_py() if isinstance(config, JsProxy) else dict(config)
    return BrowserRuntime(cfg, post_to_worker)
