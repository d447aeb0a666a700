"""The composition root: ``start()`` (called once by the loader, ``web/pyauth-web.js``) builds
the adapter's parts and wires them; nothing else imports this module.

::

    runtime -> api -> {fetch, sse, ws} -> source      (transports see one narrow interface)
            -> session -> {storage, worker, timers, events, refreshers, locks}
            -> worker.TokenAnswers -> worker.AnswerSource (the session)

Python code in the page gets the same object the JS API wraps from :func:`current`.
"""

from __future__ import annotations

import math
import random
from typing import Any

from pyodide.ffi import JsProxy

from pyauth_web.browser import source, urls
from pyauth_web.browser.api import PyAuthWeb, py
from pyauth_web.browser.events import Events
from pyauth_web.browser.proofs import Proofs
from pyauth_web.browser.session import Session
from pyauth_web.browser.worker import TokenAnswers, WorkerLink
from pyauth_web.options import parse_options
from pyauth_web.tokens import DEFAULT_SKEW_SECONDS, DEFAULT_STORAGE_KEY, TokenStore

_current: PyAuthWeb | None = None


def start(
    config: Any,
    post_to_worker: JsProxy,
    dpop_keys: JsProxy | None = None,
    records: JsProxy | None = None,
    record: str | None = None,
) -> PyAuthWeb:
    """Start the runtime from the loader's config ``{storageKey, skew, realms, refreshURL, ...}``
    (the loader's own keys are ignored here); ``dpop_keys`` is the loader's DPoP key store,
    ``records`` its session-record store and ``record`` the app's record as the loader read it
    (JSON text, or ``None``).
    A bad ``data-skew`` or ``data-realms`` entry is warned about and left out; a bad
    ``data-refresh-url`` fails the start with its error."""
    global _current
    cfg = py(config)
    if cfg.get("pyodide") != "external":
        # A memory snapshot carries the PRNG state it was made with (at bundle time: the same
        # for every user): draw a new seed, or every page would pick the same refresh jitter.
        # (An attached interpreter is the host's: its `random` is left alone.)
        random.seed()
    events = Events()
    skew = cfg.get("skew")
    if skew is not None and not (
        isinstance(skew, int | float) and not isinstance(skew, bool) and 0 <= skew < math.inf
    ):
        events.warn(f"ignoring data-skew {skew!r}: not a number of seconds >= 0")
        skew = None
    store = TokenStore(
        skew=DEFAULT_SKEW_SECONDS if skew is None else float(skew), canonical=urls.realm
    )
    realms: list[str] = []
    for realm in cfg.get("realms") or []:
        try:
            realms.append(store.canonical_realm(realm))
        except ValueError as exc:
            events.warn(f"ignoring configured realm: {exc}")
    app = cfg.get("storageKey") or DEFAULT_STORAGE_KEY
    proofs = Proofs(dpop_keys, store.clock)
    text = record if isinstance(record, str) else None
    session = Session(app, store, realms, WorkerLink(post_to_worker), events, proofs, records, text)
    answers = TokenAnswers(app, session)
    bound = []
    for realm in cfg.get("dpop") or []:  # data-dpop: before the first sync, so no Bearer slips out
        try:
            bound.append(store.canonical_realm(realm))
        except ValueError as exc:
            events.warn(f"ignoring data-dpop realm: {exc}")
    session.dpop.realms = frozenset(bound)
    if cfg.get("refreshURL"):
        coordinator = session.coordinator
        session.apply(
            parse_options(
                {"refreshURL": cfg["refreshURL"]},
                refresh_timeout=coordinator.refresh_timeout,
                lock_timeout=coordinator.lock_timeout,
                canonical=store.canonical_realm,
            )
        )
    session.start()
    _current = PyAuthWeb(session, answers)
    source.register(session)
    return _current


def current() -> PyAuthWeb:
    """The page's runtime (for Python code in the page), once the loader has started it."""
    if _current is None:
        raise RuntimeError("pyauth-web runtime not started (wait for pyauthWeb.ready)")
    return _current
