"""What the host sees: window events and warnings, and the cross-tab relay of auth errors.

- ``console:auth-error`` (:data:`AUTH_ERROR_EVENT`): once per failure episode, ``detail``
  ``{realmURL, reason, status, recoverable}``;
- ``pyauth-web:token-refreshed`` (:data:`REFRESHED_EVENT`): ``detail`` ``{realmURL}``;
- ``pyauth-web:event``: ``detail`` ``{kind, ...}`` for everything else (``warning`` too).

The relay is a ``BroadcastChannel`` per app: a tab that gives up on a realm tells the other
tabs once, and each of them tells its own host once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import js
from pyodide.ffi import create_proxy, to_js

from pyauth_web import protocol
from pyauth_web.protocol import AUTH_ERROR_EVENT, EVENT, REFRESHED_EVENT

RELAYED_AUTH_ERROR = "auth-error"


def plain(value: Any) -> Any:
    """A plain JS value (objects, not Maps) for postMessage / structured clone / events."""
    return to_js(value, dict_converter=js.Object.fromEntries)


class Events:
    """Dispatches the runtime's window events."""

    def dispatch(self, name: str, detail: dict[str, Any]) -> None:
        js.window.dispatchEvent(js.CustomEvent.new(name, plain({"detail": detail})))

    def emit(self, kind: str, **detail: Any) -> None:
        self.dispatch(EVENT, {**detail, "kind": kind})

    def warn(self, message: str) -> None:
        js.console.warn(f"pyauth-web: {message}")
        self.emit("warning", message=message)

    def refreshed(self, realm: str) -> None:
        self.dispatch(REFRESHED_EVENT, {"realmURL": realm})

    def auth_error(self, realm: str, reason: str, status: int | None) -> dict[str, Any]:
        detail = {"realmURL": realm, "reason": reason, "status": status, "recoverable": False}
        self.dispatch(AUTH_ERROR_EVENT, detail)
        self.emit("auth-error", **detail)
        return detail


class AuthErrorRelay:
    """Tells the app's other tabs about an auth error, and hears theirs:
    ``on_error(realm, reason, status)`` for each well-formed message from another tab."""

    def __init__(self, app: str, on_error: Callable[[str, str, int | None], None]) -> None:
        self._on_error = on_error
        self._channel = js.BroadcastChannel.new(protocol.channel_name(app))
        self._listener = create_proxy(self._on_message)
        self._channel.addEventListener("message", self._listener)

    def post(self, detail: dict[str, Any]) -> None:
        self._channel.postMessage(plain({**detail, "type": RELAYED_AUTH_ERROR}))

    def _on_message(self, event: Any) -> None:
        try:
            msg = event.data.to_py()
        except Exception:  # noqa: BLE001 - foreign message shapes are ignored
            return
        if not isinstance(msg, dict) or msg.get("type") != RELAYED_AUTH_ERROR:
            return
        realm, status = msg.get("realmURL"), msg.get("status")
        if isinstance(realm, str):
            reason = str(msg.get("reason") or "refresh failed")
            self._on_error(realm, reason, status if isinstance(status, int) else None)
