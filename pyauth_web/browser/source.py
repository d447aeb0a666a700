"""The narrow interface that fetch, SSE and WebSocket clients depend on, and nothing else.

The session (:class:`pyauth_web.browser.session.Session`) implements it; the composition root
registers it with :func:`register`, and Python code in the page reaches it with
:func:`current`. Transports never see the runtime's other parts.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, Protocol

from pyauth_web.protocol import Redirect


class TokenSource(Protocol):
    @property
    def skew(self) -> float:
        """Seconds before ``exp`` at which a token counts as stale."""
        ...

    def now(self) -> float: ...

    def current_token(self, url: str) -> str | None:
        """The fresh token held now for the canonical ``url``; never refreshes."""
        ...

    async def get_token(self, url: Any) -> str | None:
        """The fresh token for ``url`` (canonicalised as the browser sends it), refreshing
        first when it is stale; ``None`` when no realm holds one. Raises ``RefreshError``."""
        ...

    async def force_refresh(self, url: str, stale: str | None) -> str:
        """A new token for the realm of the canonical ``url``, replacing ``stale`` (the token
        a server just refused). Raises ``RefreshError`` when there is none to be had: no realm
        holds a token for ``url``, no token was sent, no refresher, or the refresh failed."""
        ...

    async def auth_headers(self, url: str, method: str, token: str) -> dict[str, str]:
        """The headers that send ``token`` to the canonical ``url`` with ``method``:
        ``Authorization: Bearer``, or ``Authorization: DPoP`` plus a fresh ``DPoP`` proof for a
        DPoP-bound token. Raises ``RefreshError`` (``dpop key lost``) when it cannot be sent."""
        ...

    def saw_response(self, url: str, status: int, www_authenticate: Any, nonce: Any) -> bool:
        """A response to a request that carried a token: ``True`` when it asks for one retry
        with the server's new DPoP nonce (kept for ``url``'s origin)."""
        ...

    def redirect_for(self, url: str | None) -> Redirect:
        """``fetch``'s ``redirect`` mode for a request carrying the token for ``url``."""
        ...

    def report_auth_error(self, url: str, reason: str) -> None:
        """A stream gave up on ``url``: tell this tab's host once (``console:auth-error``)."""
        ...

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` as a task the runtime keeps a reference to."""
        ...

    def warn(self, message: str) -> None: ...


_current: TokenSource | None = None


def register(source: TokenSource) -> None:
    global _current
    _current = source


def current() -> TokenSource:
    """The page's token source (for Python code in the page), once the loader started it."""
    if _current is None:
        raise RuntimeError("pyauth-web runtime not started (wait for pyauthWeb.ready)")
    return _current
