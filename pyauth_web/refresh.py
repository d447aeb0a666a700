"""Token refresh: backoff, failure classification, proactive schedule, single-flight coordinator.

Sans-I/O: no browser imports. Time (``clock``), waiting (``sleep``), randomness (``rng``),
the refresh call itself (``refresher``), the cross-tab lock (``lock``) and re-reading the
shared token storage (``reread``) are all injected, so the same code runs under CPython
(tests, with fakes) and in Pyodide (the browser's event loop; no threads, no
``asyncio.run``).

Failure rules (:func:`is_retryable_status`): a network error (no status), 429 and 5xx are
worth retrying; every other status (400 ``invalid_grant``, 401, 403, other 4xx, ...) is not.

Deadlines: each attempt has ``refresh_timeout`` seconds (the refresher is cancelled after it,
which aborts its request), and waiting for the cross-tab lock has ``lock_timeout`` seconds; both
end as a retryable failure (``"refresh timed out"``, ``"refresh lock timed out"``). The lock is
held per attempt, not across the backoff. So one :meth:`RefreshCoordinator.refresh` ends within
``attempts * (lock_timeout + refresh_timeout) + sum of the backoff ceilings``
(:meth:`RefreshCoordinator.worst_case`): with the defaults 3 x (15 + 10) + 0.5 + 1 = 76.5 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from enum import StrEnum

from .tokens import DEFAULT_SKEW_SECONDS, Clock, InvalidToken, TokenEntry, token_expiry

DEFAULT_REFRESH_JITTER = 5.0
"""Seconds: proactive refreshes start up to this much earlier than ``exp - skew``, at random,
so that many tabs holding the same token do not all ask at the same instant."""

DEFAULT_REFRESH_TIMEOUT = 10.0
"""Seconds one refresh attempt may take (request and reply) before it is abandoned."""
DEFAULT_LOCK_TIMEOUT = 15.0
"""Seconds to wait for the cross-tab refresh lock. Longer than one attempt, so that a waiter
outlasts a holder whose attempt runs to its deadline."""

INVALID_GRANT = "invalid_grant"
"""The OAuth ``error`` code of a refresh token the server no longer accepts (RFC 6749 5.2)."""


class Reason(StrEnum):
    """The ``reason`` of a :class:`RefreshError` that pyauth-web decides itself. Hosts see the
    values (``console:auth-error``'s ``reason``, error messages): they do not change. Other
    reasons come from the server: its OAuth ``error`` code, else ``"http <status>"``."""

    NETWORK_ERROR = "network error"  # no response arrived (retryable)
    REFRESH_TIMED_OUT = "refresh timed out"  # no answer within refresh_timeout (retryable)
    LOCK_TIMED_OUT = "refresh lock timed out"  # the cross-tab lock stayed taken (retryable)
    LOGGED_OUT = "logged out"  # the session went away during the refresh: discarded
    CANCELLED = "cancelled"
    RECONFIGURED = "reconfigured"  # configure() replaced the refresher
    CLOSED = "closed"  # the runtime was closed
    REJECTED_BY_ON_SUCCESS = "token rejected by on_success"
    REFRESH_FAILED = "refresh failed"  # another tab's failure, relayed without a reason
    NO_REFRESHER = "no refresher configured"
    NO_TOKEN_TO_REFRESH = "no token to refresh"  # a stream's URL holds no token (any more)
    CALLBACK_RETURNED_NO_TOKEN = "refresh callback returned no token"
    REFRESH_URL_RETURNED_NO_TOKEN = "refresh URL answered without a token"
    REFRESH_URL_REDIRECTED = "refresh URL redirected"
    TOKEN_ENDPOINT_REDIRECTED = "token endpoint redirected"
    NO_REFRESH_TOKEN = "no refresh token for this session"
    REFRESH_TOKEN_USED = "refresh token already used"  # never sent twice (rotation)
    DPOP_KEY_LOST = "dpop key lost"  # a DPoP-bound token whose key is gone or another one


Refresher = Callable[[str], Awaitable[str]]
Sleep = Callable[[float], Awaitable[None]]
RealmLock = Callable[[str], AbstractAsyncContextManager[object]]
Reread = Callable[[str], Awaitable[str | None]]
OnSuccess = Callable[[str, str], Awaitable[None] | None]
"""``on_success(realm, token)``: store a new token. It may return an awaitable, which is awaited
before the cross-tab lock is released (for writes that other tabs must see once they hold it)."""
Deadline = Callable[[float], AbstractAsyncContextManager[object]]
"""``deadline(seconds)``: an async context that raises ``TimeoutError`` when its body runs
longer (cancelling it); :func:`asyncio.timeout` by default, injectable for tests."""


# -- backoff ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BackoffPolicy:
    """Exponential backoff with *full jitter* (all times in seconds).

    ``attempts`` counts calls in total (so ``attempts - 1`` waits). The wait after failed
    attempt ``n`` (0-based) is uniform in ``[0, min(cap, base * 2**n)]``. Full jitter rather
    than equal jitter: it spreads retries from many clients the most, and a short wait is
    harmless because a refresh is cheap and bounded by ``attempts``.
    """

    attempts: int = 3
    base: float = 0.5
    cap: float = 5.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be >= 1")
        if not (self.base >= 0 and self.cap >= 0):  # also rejects NaN
            raise ValueError("base and cap must be >= 0")

    def ceiling(self, attempt: int) -> float:
        """Upper bound of :meth:`delay` for ``attempt``: ``min(cap, base * 2**attempt)``."""
        if attempt < 0:
            raise ValueError("attempt must be >= 0")
        try:
            raw = math.ldexp(self.base, attempt)
        except OverflowError:
            raw = math.inf
        return min(self.cap, raw)

    def delay(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0.0, self.ceiling(attempt))

    def delays(self, rng: random.Random) -> list[float]:
        """The waits between the attempts, in order (``attempts - 1`` of them)."""
        return [self.delay(n, rng) for n in range(self.attempts - 1)]


def check_timeout(value: object, name: str) -> float:
    """``value`` as a deadline in seconds: a finite number > 0 (not a bool); else a
    ``ValueError`` naming ``name`` and the value."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ValueError(f"{name} must be a finite number of seconds > 0, got {value!r}")
    return float(value)


# -- errors -------------------------------------------------------------------------------------
class RefreshError(Exception):
    """A refresh that did not produce a token.

    ``reason`` is the OAuth ``error`` code when the server sent one (``"invalid_grant"``),
    else ``"http <status>"`` or one of :class:`Reason` (``"network error"``, ``"logged out"``).
    ``status`` is the HTTP status, ``None`` when no response arrived.
    """

    def __init__(
        self,
        realm: str,
        reason: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        description: str | None = None,
    ) -> None:
        self.realm = realm
        self.reason = reason
        self.status = status
        self.retryable = retryable
        self.description = description
        self.relayed = False  # another tab's failure, received over its channel: not relayed on
        super().__init__(realm, reason, status, retryable)

    @property
    def invalid_grant(self) -> bool:
        return self.reason == INVALID_GRANT

    def __str__(self) -> str:
        where = f"{self.realm}: " if self.realm else ""
        status = "no response" if self.status is None else f"status {self.status}"
        extra = f": {self.description}" if self.description else ""
        kind = "retryable" if self.retryable else "final"
        return f"{where}refresh failed ({self.reason}, {status}, {kind}){extra}"


def is_retryable_status(status: int | None) -> bool:
    """Network error (``None``), 429 and 5xx: try again; anything else: don't."""
    return status is None or status == 429 or 500 <= status <= 599


def network_error(realm: str, detail: str | None = None) -> RefreshError:
    """No response arrived (fetch rejected, offline, CORS, timeout): retryable."""
    return RefreshError(
        realm, Reason.NETWORK_ERROR, status=None, retryable=True, description=detail
    )


def http_error(
    realm: str, status: int, oauth_error: str | None = None, description: str | None = None
) -> RefreshError:
    """An error response; ``reason`` is the OAuth ``error`` code when there is one."""
    return RefreshError(
        realm,
        oauth_error or f"http {status}",
        status=status,
        retryable=is_retryable_status(status),
        description=description,
    )


# -- proactive schedule ---------------------------------------------------------------------
def refresh_at(
    exp: float | None,
    skew: float = DEFAULT_SKEW_SECONDS,
    jitter: float = DEFAULT_REFRESH_JITTER,
    rng: random.Random | None = None,
) -> float | None:
    """When to refresh a token expiring at ``exp``: ``exp - skew - uniform(0, jitter)``.

    That is no later than the moment the token stops being fresh (``TokenEntry.is_fresh``),
    so there is no gap. ``None`` for a token without ``exp`` (nothing to schedule).
    """
    if exp is None:
        return None
    if jitter < 0:
        raise ValueError("jitter must be >= 0")
    return exp - skew - (rng.uniform(0.0, jitter) if rng else random.uniform(0.0, jitter))


def jwt_is_fresh(clock: Clock, skew: float = DEFAULT_SKEW_SECONDS) -> Callable[[str], bool]:
    """``is_fresh(token)`` by the token's JWT ``exp``; a token that is not a JWT is not fresh."""

    def is_fresh(token: str) -> bool:
        try:
            exp = token_expiry(token)
        except InvalidToken:
            return False
        return TokenEntry("", token, exp).is_fresh(clock(), skew)

    return is_fresh


# -- coordinator ----------------------------------------------------------------------------
def _no_lock(realm: str) -> AbstractAsyncContextManager[None]:
    return contextlib.nullcontext()


@dataclass(eq=False)
class _Flight:
    generation: int
    epoch: int
    stale_token: str | None
    future: asyncio.Future[str]
    task: asyncio.Task[None] | None = None


class RefreshCoordinator:
    """Per-tab refresh of realm tokens: single-flight, retries, failure episodes, logout.

    * :meth:`refresh` is single-flight per realm: concurrent callers share one attempt
      sequence and all get the same token or the same :class:`RefreshError`.
    * Retryable errors are retried per ``backoff`` (waiting with ``sleep``); the first
      non-retryable error, or running out of attempts, ends the *failure episode*: the realm
      is marked failed, ``on_failure`` runs once, and later :meth:`refresh` calls raise that
      error at once, without calling the refresher, until :meth:`reset` (a new token was set).
    * Each attempt runs inside ``lock(realm)`` (the cross-tab lock, injected); the lock is
      released during the backoff, so a tab whose attempt hangs cannot starve the others.
      Inside it, ``reread(realm)`` is consulted first: a fresh token other than the caller's
      ``stale_token`` means another tab refreshed already, and it is used as is. After an
      ``invalid_grant`` it is consulted once more (a sibling may have rotated the grant).
    * Deadlines: waiting for the lock ends after ``lock_timeout`` seconds
      (``"refresh lock timed out"``), the refresher call after ``refresh_timeout`` seconds
      (``"refresh timed out"``; the refresher is cancelled, which aborts its request). Both
      are retryable failures, so :meth:`refresh` ends within :meth:`worst_case` seconds.
    * :meth:`clear` (logout) bumps :attr:`generation`: in-flight callers get
      ``RefreshError(reason="logged out")`` immediately, their attempt is cancelled, and a
      late result is discarded (``on_success`` never runs for it).
    * :meth:`reset` during a flight makes that flight *superseded*: its callers still get its
      outcome, but it neither calls the hooks nor marks the realm failed (the host's token
      is newer than anything it could bring).

    ``on_success(realm, token)`` runs inside the lock, before the callers resume, so it is the
    place to store the token where sibling tabs will find it (it also runs for a token adopted
    from a sibling tab); when it returns an awaitable, the lock is held until that ends. If it
    raises ``RefreshError(reason="logged out")`` the result is discarded as after :meth:`clear`
    (the session vanished from shared storage); any other exception fails the flight (non-
    retryable) like a refresher error would. ``refresher`` should raise :class:`RefreshError`
    (see :func:`network_error`, :func:`http_error`); any other exception ends the episode as a
    non-retryable failure. A hook (``on_failure``) that raises surfaces in the event loop's
    exception handler; the callers are already settled by then.
    """

    def __init__(
        self,
        refresher: Refresher,
        *,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        backoff: BackoffPolicy | None = None,
        lock: RealmLock = _no_lock,
        reread: Reread | None = None,
        is_fresh: Callable[[str], bool] | None = None,
        skew: float = DEFAULT_SKEW_SECONDS,
        on_failure: Callable[[RefreshError], None] | None = None,
        on_success: OnSuccess | None = None,
        refresh_timeout: float = DEFAULT_REFRESH_TIMEOUT,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        deadline: Deadline = asyncio.timeout,
    ) -> None:
        self.refresh_timeout = check_timeout(refresh_timeout, "refresh_timeout")
        self.lock_timeout = check_timeout(lock_timeout, "lock_timeout")
        self._deadline = deadline
        self._refresher = refresher
        self.clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.backoff = backoff or BackoffPolicy()
        self._lock = lock
        self._reread = reread
        self._is_fresh = is_fresh or jwt_is_fresh(clock, skew)
        self._on_failure = on_failure
        self._on_success = on_success
        self._generation = 0
        self._epochs: dict[str, int] = {}
        self._flights: dict[str, _Flight] = {}
        self._failed: dict[str, RefreshError] = {}

    # -- queries --------------------------------------------------------------------------
    @property
    def generation(self) -> int:
        return self._generation

    def failed(self, realm: str) -> RefreshError | None:
        """The error that ended the realm's current failure episode, if any."""
        return self._failed.get(realm)

    def in_flight(self, realm: str) -> bool:
        return realm in self._flights

    def worst_case(self) -> float:
        """Seconds within which :meth:`refresh` settles, whatever the refresher and the other
        tabs do: every attempt may wait for the lock and then run to its deadline, and the
        backoff waits are at most their ceilings (plus the hooks' own, synchronous, time)."""
        attempts = self.backoff.attempts
        backoff = sum(self.backoff.ceiling(n) for n in range(attempts - 1))
        return attempts * (self.lock_timeout + self.refresh_timeout) + backoff

    # -- control --------------------------------------------------------------------------
    async def refresh(self, realm: str, stale_token: str | None = None) -> str:
        """A new token for ``realm`` (see the class docstring); raises :class:`RefreshError`.

        ``stale_token`` is the token the caller is replacing (the expired one, or the one a
        server just rejected); a reread token equal to it is not taken as a sibling's
        refresh. Only the first of concurrent callers' ``stale_token`` is used.
        """
        failed = self._failed.get(realm)
        if failed is not None:
            raise failed.with_traceback(None)
        flight = self._flights.get(realm)
        if flight is None:
            flight = self._start(realm, stale_token)
        # shield: one caller being cancelled must not cancel the shared result.
        return await asyncio.shield(flight.future)

    def reset(self, realm: str) -> None:
        """The host set a new token for ``realm``: end its failure episode (if any)."""
        self._failed.pop(realm, None)
        self._epochs[realm] = self._epochs.get(realm, 0) + 1

    def cancel_all(self, reason: Reason = Reason.CANCELLED) -> int:
        """Fail every in-flight refresh with ``RefreshError(reason=reason)`` and stop it.

        Bumps :attr:`generation`, so results arriving later are discarded. Returns how many
        flights were cancelled.
        """
        self._generation += 1
        flights, self._flights = self._flights, {}
        for realm, flight in flights.items():
            self._settle(flight, RefreshError(realm, reason, retryable=False))
            if flight.task is not None:
                flight.task.cancel()
        return len(flights)

    def carry_failures(
        self, old: RefreshCoordinator, keep: Callable[[RefreshError], bool] = lambda _: True
    ) -> None:
        """This coordinator replaces ``old`` (``configure()``): ``old``'s failure episodes go on
        here, silently (each was reported once), except those ``keep`` refuses (the new
        configuration removed their cause). A failed realm stays failed until :meth:`reset`."""
        for realm, error in old._failed.items():
            if keep(error):
                self._failed.setdefault(realm, error)

    def clear(self) -> None:
        """Logout: cancel in-flight refreshes ("logged out") and forget failure episodes."""
        self.cancel_all(Reason.LOGGED_OUT)
        self._failed.clear()

    # -- internals ------------------------------------------------------------------------
    def _start(self, realm: str, stale_token: str | None) -> _Flight:
        loop = asyncio.get_running_loop()
        flight = _Flight(
            self._generation, self._epochs.get(realm, 0), stale_token, loop.create_future()
        )
        self._flights[realm] = flight
        flight.task = loop.create_task(self._run(realm, flight))
        return flight

    async def _run(self, realm: str, flight: _Flight) -> None:
        outcome: str | RefreshError
        try:
            outcome = await self._attempts(realm, flight)
        except RefreshError as err:
            err.realm = err.realm or realm
            outcome = err
        except asyncio.CancelledError:
            self._settle(flight, RefreshError(realm, Reason.CANCELLED, retryable=False))
            self._forget(realm, flight)
            raise
        except Exception as exc:  # a refresher bug or an unmapped error: fail, never hang
            outcome = RefreshError(
                realm, f"unexpected {type(exc).__name__}", description=str(exc) or None
            )
            outcome.__cause__ = exc
        self._forget(realm, flight)

        logged_out = isinstance(outcome, RefreshError) and outcome.reason == Reason.LOGGED_OUT
        if flight.generation != self._generation or logged_out:  # logged out meanwhile: discard
            self._settle(flight, RefreshError(realm, Reason.LOGGED_OUT, retryable=False))
            return
        self._settle(flight, outcome)
        if isinstance(outcome, RefreshError) and self._current(realm, flight):
            self.fail(outcome)

    def _current(self, realm: str, flight: _Flight) -> bool:
        """Not logged out and not superseded by a host-set token since the flight started."""
        return flight.generation == self._generation and flight.epoch == self._epochs.get(realm, 0)

    def fail(self, error: RefreshError) -> None:
        """Start a failure episode for ``error.realm`` (also used for another tab's failure)."""
        if error.realm in self._failed:
            return
        self._failed[error.realm] = error
        if self._on_failure is not None:
            self._on_failure(error)

    async def _attempts(self, realm: str, flight: _Flight) -> str:
        for attempt in range(self.backoff.attempts):
            try:
                return await self._attempt(realm, flight)
            except RefreshError as err:
                if not err.retryable or attempt == self.backoff.attempts - 1:
                    raise
            # Not holding the lock while waiting: another tab may refresh (we then find its
            # token on the next attempt), and a hung holder cannot starve the others.
            await self._sleep(self.backoff.delay(attempt, self._rng))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(self, realm: str, flight: _Flight) -> str:
        # Everything, storing the result included (on_success), happens under the cross-tab
        # lock: a sibling that takes the lock next must find the new token in storage.
        async with contextlib.AsyncExitStack() as held:
            try:
                async with self._deadline(self.lock_timeout):
                    await held.enter_async_context(self._lock(realm))
            except TimeoutError:
                raise RefreshError(
                    realm,
                    Reason.LOCK_TIMED_OUT,
                    retryable=True,
                    description=f"the refresh lock stayed taken for {self.lock_timeout:g} s",
                ) from None
            token = await self._obtain(realm, flight.stale_token)
            if self._on_success is not None and self._current(realm, flight):
                try:
                    stored = self._on_success(realm, token)
                    if stored is not None:  # an async hook: still under the lock until it ends
                        await stored
                except RefreshError:
                    raise
                except Exception as exc:
                    raise RefreshError(
                        realm,
                        Reason.REJECTED_BY_ON_SUCCESS,
                        description=f"{type(exc).__name__}: {exc}",
                    ) from exc
            return token

    async def _obtain(self, realm: str, stale_token: str | None) -> str:
        failed = self._failed.get(realm)  # another tab's episode, relayed while we waited
        if failed is not None:
            raise failed.with_traceback(None)
        sibling = await self._sibling_token(realm, stale_token)
        if sibling is not None:
            return sibling
        try:
            async with self._deadline(self.refresh_timeout):
                return await self._refresher(realm)
        except TimeoutError:
            raise RefreshError(
                realm,
                Reason.REFRESH_TIMED_OUT,
                retryable=True,
                description=f"no answer within {self.refresh_timeout:g} s",
            ) from None
        except RefreshError as err:
            if err.invalid_grant:
                sibling = await self._sibling_token(realm, stale_token)
                if sibling is not None:
                    return sibling
            raise

    async def _sibling_token(self, realm: str, stale_token: str | None) -> str | None:
        """A fresh token in shared storage that is not the one being replaced, if any."""
        if self._reread is None:
            return None
        token = await self._reread(realm)
        if token is None or token == stale_token or not self._is_fresh(token):
            return None
        return token

    def _forget(self, realm: str, flight: _Flight) -> None:
        if self._flights.get(realm) is flight:
            del self._flights[realm]

    @staticmethod
    def _settle(flight: _Flight, outcome: str | RefreshError) -> None:
        fut = flight.future
        if fut.done():
            return
        if isinstance(outcome, str):
            fut.set_result(outcome)
        else:
            fut.set_exception(outcome)
            fut.exception()  # retrieved: callers may all be gone; the hooks report it
