"""Refresh logic: backoff, classification, proactive schedule, the single-flight coordinator.

No pytest-asyncio: each async test body runs under ``asyncio.run``. Sleeping is faked (it
records the delay and only yields to the loop), so no test waits in real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyauth_web.refresh import (
    DEFAULT_REFRESH_JITTER,
    INVALID_GRANT,
    BackoffPolicy,
    Reason,
    RefreshCoordinator,
    RefreshError,
    http_error,
    is_retryable_status,
    jwt_is_fresh,
    network_error,
    refresh_at,
)
from pyauth_web.tokens import TokenEntry

REALM = "https://api.example/"
OTHER = "https://other.example/"
SEED = 1234
KEY = "test-key-" + "x" * 32  # long enough for HS256 without a warning


def run(coro: Awaitable[Any]) -> Any:
    async def main() -> Any:
        return await coro

    return asyncio.run(main())


async def settle(rounds: int = 10) -> None:
    """Let every ready task run a few steps."""
    for _ in range(rounds):
        await asyncio.sleep(0)


class FakeSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


class Script:
    """A refresher that plays back outcomes (token or error), optionally held at a gate."""

    def __init__(self, *outcomes: str | BaseException, gate: asyncio.Event | None = None):
        self.outcomes = list(outcomes)
        self.gate = gate
        self.calls: list[str] = []
        self.cancelled = False

    async def __call__(self, realm: str) -> str:
        self.calls.append(realm)
        outcome = self.outcomes.pop(0)
        if self.gate is not None:
            try:
                await self.gate.wait()
            except asyncio.CancelledError:
                self.cancelled = True
                raise
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def unavailable() -> RefreshError:
    return http_error(REALM, 503)


def invalid_grant() -> RefreshError:
    return http_error(REALM, 400, INVALID_GRANT, "refresh token revoked")


def coordinator(refresher: Callable[[str], Awaitable[str]], **kw: Any) -> RefreshCoordinator:
    kw.setdefault("sleep", FakeSleep())
    kw.setdefault("rng", random.Random(SEED))
    kw.setdefault("clock", lambda: 1_000.0)
    return RefreshCoordinator(refresher, **kw)


async def outcomes(aws: Sequence[Awaitable[str]]) -> list[str | BaseException]:
    return await asyncio.gather(*aws, return_exceptions=True)


# -- backoff ------------------------------------------------------------------------------------
def test_backoff_delays_are_bounded_by_the_exponential_ceiling() -> None:
    policy = BackoffPolicy(attempts=6, base=0.5, cap=5.0)
    assert [policy.ceiling(n) for n in range(5)] == [0.5, 1.0, 2.0, 4.0, 5.0]
    delays = policy.delays(random.Random(SEED))
    assert len(delays) == 5
    for n, d in enumerate(delays):
        assert 0.0 <= d <= policy.ceiling(n)
    assert delays == policy.delays(random.Random(SEED))  # seeded: reproducible
    assert len(set(delays)) == 5  # jittered, not constant


def test_backoff_defaults_and_edges() -> None:
    policy = BackoffPolicy()
    assert (policy.attempts, policy.base, policy.cap) == (3, 0.5, 5.0)
    assert len(policy.delays(random.Random(0))) == 2
    assert BackoffPolicy(attempts=1).delays(random.Random(0)) == []
    assert policy.ceiling(10_000) == 5.0  # no overflow
    assert BackoffPolicy(base=0.0).delay(3, random.Random(0)) == 0.0
    for bad in ({"attempts": 0}, {"base": -1.0}, {"cap": -1.0}, {"cap": float("nan")}):
        with pytest.raises(ValueError):
            BackoffPolicy(**bad)
    with pytest.raises(ValueError):
        policy.ceiling(-1)


@given(
    attempts=st.integers(1, 40),
    base=st.floats(0.0, 10.0),
    cap=st.floats(0.0, 120.0),
    seed=st.integers(0, 2**32),
)
def test_every_backoff_delay_is_within_bounds(
    attempts: int, base: float, cap: float, seed: int
) -> None:
    policy = BackoffPolicy(attempts, base, cap)
    delays = policy.delays(random.Random(seed))
    assert len(delays) == attempts - 1
    for n, d in enumerate(delays):
        assert 0.0 <= d <= min(cap, base * 2**n)


# -- classification -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "retryable"),
    [(None, True), (429, True), (500, True), (502, True), (503, True), (599, True),
     (400, False), (401, False), (403, False), (404, False), (409, False), (499, False),
     (200, False), (302, False)],
)  # fmt: skip
def test_retryable_statuses(status: int | None, retryable: bool) -> None:
    assert is_retryable_status(status) is retryable


def test_error_helpers() -> None:
    net = network_error(REALM, "fetch failed")
    assert (net.reason, net.status, net.retryable) == ("network error", None, True)
    assert net.realm == REALM and net.description == "fetch failed"
    grant = invalid_grant()
    assert (grant.reason, grant.status, grant.retryable) == (INVALID_GRANT, 400, False)
    assert grant.invalid_grant and grant.description == "refresh token revoked"
    assert http_error(REALM, 401).reason == "http 401"
    assert not http_error(REALM, 403).retryable
    assert http_error(REALM, 429).retryable
    assert "invalid_grant" in str(grant) and REALM in str(grant)


# -- proactive schedule ---------------------------------------------------------------------
def test_refresh_at_is_within_the_jitter_window() -> None:
    rng = random.Random(SEED)
    times = [refresh_at(10_000.0, 60.0, 5.0, rng) for _ in range(1000)]
    assert all(t is not None and 10_000.0 - 65.0 <= t <= 10_000.0 - 60.0 for t in times)
    assert max(t for t in times if t) - min(t for t in times if t) > 4.0  # actually spread
    assert refresh_at(None, 60.0, 5.0, rng) is None
    assert refresh_at(10_000.0, 60.0, 0.0, rng) == 10_000.0 - 60.0
    assert DEFAULT_REFRESH_JITTER == 5.0
    with pytest.raises(ValueError):
        refresh_at(10_000.0, 60.0, -1.0, rng)


@given(exp=st.floats(0, 2e9), skew=st.floats(0, 600), jitter=st.floats(0, 60), seed=st.integers())
def test_refresh_at_bounds_property(exp: float, skew: float, jitter: float, seed: int) -> None:
    t = refresh_at(exp, skew, jitter, random.Random(seed))
    assert t is not None
    assert exp - skew - jitter - 1e-6 <= t <= exp - skew


def test_skew_boundary() -> None:
    entry = TokenEntry(REALM, "t", exp=10_000.0)
    assert entry.is_fresh(10_000.0 - 61, 60.0)
    assert not entry.is_fresh(10_000.0 - 59, 60.0)
    assert not entry.is_fresh(10_000.0 - 60, 60.0)  # the boundary itself is stale
    assert TokenEntry(REALM, "t", exp=None).is_fresh(1e12, 60.0)  # never due


def test_jwt_is_fresh() -> None:
    now = [1_000.0]
    is_fresh = jwt_is_fresh(lambda: now[0], 60.0)
    token = jwt.encode({"exp": 2_000}, KEY, algorithm="HS256")
    assert is_fresh(token)
    now[0] = 2_000.0 - 59
    assert not is_fresh(token)
    assert is_fresh(jwt.encode({"sub": "x"}, KEY, algorithm="HS256"))  # no exp
    assert not is_fresh("not-a-jwt")


# -- coordinator: single flight -----------------------------------------------------------------
def test_single_flight_100_callers_one_refresh() -> None:
    async def body() -> None:
        gate = asyncio.Event()
        script = Script("new", gate=gate)
        successes: list[tuple[str, str]] = []
        coord = coordinator(script, on_success=lambda r, t: successes.append((r, t)))
        callers = [asyncio.create_task(coord.refresh(REALM)) for _ in range(100)]
        await settle()
        assert coord.in_flight(REALM)
        gate.set()
        assert await asyncio.gather(*callers) == ["new"] * 100
        assert script.calls == [REALM]
        assert successes == [(REALM, "new")]
        assert not coord.in_flight(REALM)

    run(body())


def test_separate_realms_refresh_separately_and_sequential_calls_refresh_again() -> None:
    async def body() -> None:
        script = Script("a1", "b1", "a2")
        coord = coordinator(script)
        other = "https://other.example/"
        both = await asyncio.gather(coord.refresh(REALM), coord.refresh(other))
        assert list(both) == ["a1", "b1"]
        assert await coord.refresh(REALM) == "a2"
        assert script.calls == [REALM, other, REALM]

    run(body())


def test_a_cancelled_caller_does_not_cancel_the_shared_refresh() -> None:
    async def body() -> None:
        gate = asyncio.Event()
        script = Script("new", gate=gate)
        coord = coordinator(script)
        first = asyncio.create_task(coord.refresh(REALM))
        second = asyncio.create_task(coord.refresh(REALM))
        await settle()
        first.cancel()
        await settle()
        gate.set()
        assert await second == "new"
        assert first.cancelled() and not script.cancelled

    run(body())


# -- coordinator: retries -----------------------------------------------------------------------
def test_retryable_errors_are_retried_with_backoff() -> None:
    async def body() -> None:
        sleep = FakeSleep()
        script = Script(unavailable(), unavailable(), "new")
        failures: list[RefreshError] = []
        coord = coordinator(script, sleep=sleep, on_failure=failures.append)
        assert await coord.refresh(REALM) == "new"
        assert len(script.calls) == 3
        assert sleep.delays == BackoffPolicy().delays(random.Random(SEED))
        assert [d <= c for d, c in zip(sleep.delays, (0.5, 1.0), strict=True)] == [True, True]
        assert failures == [] and coord.failed(REALM) is None

    run(body())


def test_invalid_grant_is_not_retried() -> None:
    async def body() -> None:
        sleep = FakeSleep()
        script = Script(invalid_grant(), "never")
        coord = coordinator(script, sleep=sleep)
        with pytest.raises(RefreshError) as info:
            await coord.refresh(REALM)
        assert (info.value.reason, info.value.status) == (INVALID_GRANT, 400)
        assert len(script.calls) == 1 and sleep.delays == []

    run(body())


@pytest.mark.parametrize("status", [401, 403, 404])
def test_final_statuses_are_not_retried(status: int) -> None:
    async def body() -> None:
        script = Script(http_error(REALM, status), "never")
        coord = coordinator(script)
        with pytest.raises(RefreshError) as info:
            await coord.refresh(REALM)
        assert info.value.status == status and not info.value.retryable
        assert len(script.calls) == 1

    run(body())


def test_network_errors_until_attempts_run_out() -> None:
    async def body() -> None:
        sleep = FakeSleep()
        errors = [network_error(REALM) for _ in range(3)]
        script = Script(*errors, "never")
        failures: list[RefreshError] = []
        coord = coordinator(script, sleep=sleep, on_failure=failures.append)
        with pytest.raises(RefreshError) as info:
            await coord.refresh(REALM)
        assert info.value is errors[2]
        assert len(script.calls) == 3 and len(sleep.delays) == 2
        assert failures == [errors[2]] and coord.failed(REALM) is errors[2]

    run(body())


def test_unexpected_refresher_exception_is_a_final_failure() -> None:
    async def body() -> None:
        boom = KeyError("oops")
        coord = coordinator(Script(boom, "never"))
        with pytest.raises(RefreshError) as info:
            await coord.refresh(REALM)
        assert info.value.__cause__ is boom and not info.value.retryable
        assert info.value.realm == REALM and coord.failed(REALM) is info.value

    run(body())


def test_error_without_realm_gets_the_realm() -> None:
    async def body() -> None:
        coord = coordinator(Script(RefreshError("", "http 401", status=401)))
        with pytest.raises(RefreshError) as info:
            await coord.refresh(REALM)
        assert info.value.realm == REALM

    run(body())


# -- coordinator: failure episodes --------------------------------------------------------------
def test_failure_reported_once_and_raised_to_every_waiting_caller() -> None:
    async def body() -> None:
        gate = asyncio.Event()
        err = invalid_grant()
        script = Script(err, gate=gate)
        failures: list[RefreshError] = []
        coord = coordinator(script, on_failure=failures.append)
        callers = [asyncio.create_task(coord.refresh(REALM)) for _ in range(10)]
        await settle()
        gate.set()
        results = await outcomes(callers)
        assert all(r is err for r in results)
        assert failures == [err]
        assert len(script.calls) == 1

    run(body())


def test_failed_realm_short_circuits_until_reset() -> None:
    async def body() -> None:
        script = Script(invalid_grant(), "fresh-after-login")
        failures: list[RefreshError] = []
        coord = coordinator(script, on_failure=failures.append)
        with pytest.raises(RefreshError) as first:
            await coord.refresh(REALM)
        for _ in range(5):
            with pytest.raises(RefreshError) as again:
                await coord.refresh(REALM)
            assert again.value is first.value
        assert len(script.calls) == 1 and len(failures) == 1
        coord.reset(REALM)  # the host set a new token
        assert coord.failed(REALM) is None
        assert await coord.refresh(REALM) == "fresh-after-login"
        assert len(script.calls) == 2 and len(failures) == 1

    run(body())


def test_a_replacing_coordinator_carries_the_failure_episodes_silently() -> None:
    """configure() makes a new coordinator: a failed realm stays failed there (no second
    report, no refresher call) until a new token; ``keep`` drops episodes whose cause is gone."""

    async def body() -> None:
        failures: list[RefreshError] = []
        old = coordinator(Script(invalid_grant()), on_failure=failures.append)
        with pytest.raises(RefreshError):
            await old.refresh(REALM)
        old.fail(RefreshError(OTHER, "no refresher configured"))
        script = Script("fresh-after-login", "other-token")
        new = coordinator(script, on_failure=failures.append)
        new.carry_failures(old, keep=lambda err: err.reason != "no refresher configured")
        assert new.failed(REALM) is old.failed(REALM) and new.failed(OTHER) is None
        with pytest.raises(RefreshError) as again:
            await new.refresh(REALM)
        assert again.value.invalid_grant and script.calls == []
        assert await new.refresh(OTHER) == "fresh-after-login"  # its cause was dropped
        new.reset(REALM)  # the host set a new token
        assert await new.refresh(REALM) == "other-token"
        assert [f.reason for f in failures] == ["invalid_grant", "no refresher configured"]

    run(body())


def test_reset_during_a_flight_supersedes_its_outcome() -> None:
    async def body() -> None:
        gate = asyncio.Event()
        script = Script(invalid_grant(), gate=gate)
        failures: list[RefreshError] = []
        coord = coordinator(script, on_failure=failures.append)
        caller = asyncio.create_task(coord.refresh(REALM))
        await settle()
        coord.reset(REALM)  # host logged in again while the old grant was being refused
        gate.set()
        with pytest.raises(RefreshError):
            await caller
        assert failures == [] and coord.failed(REALM) is None

    run(body())


def test_on_success_raising_fails_the_flight() -> None:
    async def body() -> None:
        def store(realm: str, token: str) -> None:
            raise ValueError("not a JWT")

        failures: list[RefreshError] = []
        coord = coordinator(Script("garbage"), on_success=store, on_failure=failures.append)
        with pytest.raises(RefreshError) as info:
            await coord.refresh(REALM)
        assert info.value.reason == "token rejected by on_success"
        assert failures == [info.value]

    run(body())


# -- coordinator: logout --------------------------------------------------------------------------
def test_logout_during_refresh_discards_the_result() -> None:
    async def body() -> None:
        gate = asyncio.Event()
        script = Script("late", "after-login", gate=gate)
        successes: list[tuple[str, str]] = []
        coord = coordinator(script, on_success=lambda r, t: successes.append((r, t)))
        callers = [asyncio.create_task(coord.refresh(REALM)) for _ in range(3)]
        await settle()
        generation = coord.generation
        coord.clear()
        assert coord.generation == generation + 1
        results = await outcomes(callers)  # no gate.set(): must not hang
        assert all(isinstance(r, RefreshError) and r.reason == Reason.LOGGED_OUT for r in results)
        assert script.cancelled and successes == []
        gate.set()
        await settle()
        assert successes == []
        assert await coord.refresh(REALM) == "after-login"  # a new session refreshes normally

    run(body())


def test_late_reply_after_logout_never_reaches_on_success() -> None:
    async def body() -> None:
        reply = asyncio.Event()

        async def stubborn(realm: str) -> str:  # ignores cancellation, replies anyway
            try:
                await reply.wait()
            except asyncio.CancelledError:
                await reply.wait()
            return "late"

        successes: list[str] = []
        coord = coordinator(stubborn, on_success=lambda r, t: successes.append(t))
        caller = asyncio.create_task(coord.refresh(REALM))
        await settle()
        coord.clear()
        reply.set()
        with pytest.raises(RefreshError) as info:
            await caller
        assert info.value.reason == Reason.LOGGED_OUT
        await settle()
        assert successes == []

    run(body())


def test_logout_clears_failure_episodes_and_cancel_all_counts() -> None:
    async def body() -> None:
        coord = coordinator(Script(invalid_grant(), "ok"))
        with pytest.raises(RefreshError):
            await coord.refresh(REALM)
        coord.clear()
        assert coord.failed(REALM) is None
        assert coord.cancel_all() == 0
        assert await coord.refresh(REALM) == "ok"

    run(body())


# -- coordinator: cross-tab lock and reread -------------------------------------------------------
class FakeLock:
    def __init__(self, log: list[tuple[str, str]]) -> None:
        self.log = log

    @contextlib.asynccontextmanager
    async def __call__(self, realm: str) -> AsyncIterator[None]:
        self.log.append(("enter", realm))
        try:
            yield
        finally:
            self.log.append(("exit", realm))


def test_refresh_runs_inside_the_realm_lock() -> None:
    async def body() -> None:
        log: list[tuple[str, str]] = []

        async def refresher(realm: str) -> str:
            log.append(("refresh", realm))
            return "new"

        async def reread(realm: str) -> str | None:
            log.append(("reread", realm))
            return "old"

        coord = coordinator(refresher, lock=FakeLock(log), reread=reread, is_fresh=bool)
        assert await coord.refresh(REALM, stale_token="old") == "new"
        assert log == [("enter", REALM), ("reread", REALM), ("refresh", REALM), ("exit", REALM)]

    run(body())


def test_an_async_on_success_ends_before_the_lock_is_released() -> None:
    """The hook's awaitable (a write other tabs must see once they hold the lock) is awaited
    inside the lock; when it raises "logged out" the result is discarded as usual."""

    async def body() -> None:
        log: list[tuple[str, str]] = []

        async def refresher(realm: str) -> str:
            return "new"

        async def stored(token: str) -> None:
            await asyncio.sleep(0)
            log.append(("stored", token))

        coord = coordinator(
            refresher, lock=FakeLock(log), on_success=lambda realm, token: stored(token)
        )
        assert await coord.refresh(REALM) == "new"
        assert log == [("enter", REALM), ("stored", "new"), ("exit", REALM)]

        async def gone(realm: str) -> None:
            raise RefreshError(realm, Reason.LOGGED_OUT)

        failures: list[RefreshError] = []
        coord = coordinator(
            refresher, on_success=lambda realm, token: gone(realm), on_failure=failures.append
        )
        with pytest.raises(RefreshError) as info:
            await coord.refresh(REALM)
        assert info.value.reason == Reason.LOGGED_OUT and failures == []

    run(body())


def test_lock_is_released_on_failure() -> None:
    async def body() -> None:
        log: list[tuple[str, str]] = []
        coord = coordinator(Script(invalid_grant()), lock=FakeLock(log))
        with pytest.raises(RefreshError):
            await coord.refresh(REALM)
        assert log == [("enter", REALM), ("exit", REALM)]

    run(body())


def test_sibling_token_found_inside_the_lock_skips_the_refresher() -> None:
    async def body() -> None:
        script = Script("never")
        successes: list[str] = []

        async def reread(realm: str) -> str | None:
            return "sibling"

        def on_success(realm: str, token: str) -> None:
            successes.append(token)

        coord = coordinator(
            script, reread=reread, is_fresh=lambda t: t != "old", on_success=on_success
        )
        assert await coord.refresh(REALM, stale_token="old") == "sibling"
        assert script.calls == [] and successes == ["sibling"]

    run(body())


@pytest.mark.parametrize("stored", [None, "old", "expired"])
def test_reread_token_that_is_missing_stale_or_expired_is_not_used(stored: str | None) -> None:
    async def body() -> None:
        script = Script("new")

        async def reread(realm: str) -> str | None:
            return stored

        coord = coordinator(script, reread=reread, is_fresh=lambda t: t != "expired")
        assert await coord.refresh(REALM, stale_token="old") == "new"
        assert script.calls == [REALM]

    run(body())


def test_invalid_grant_then_sibling_rotated_token_is_a_success() -> None:
    async def body() -> None:
        script = Script(invalid_grant(), "never")
        stored = ["old", "rotated-by-sibling"]
        failures: list[RefreshError] = []

        async def reread(realm: str) -> str | None:
            return stored.pop(0)

        coord = coordinator(script, reread=reread, is_fresh=bool, on_failure=failures.append)
        assert await coord.refresh(REALM, stale_token="old") == "rotated-by-sibling"
        assert len(script.calls) == 1 and stored == [] and failures == []
        assert coord.failed(REALM) is None

    run(body())


def test_invalid_grant_without_sibling_token_fails() -> None:
    async def body() -> None:
        script = Script(invalid_grant())
        rereads: list[str] = []

        async def reread(realm: str) -> str | None:
            rereads.append(realm)
            return "old"

        coord = coordinator(script, reread=reread, is_fresh=bool)
        with pytest.raises(RefreshError) as info:
            await coord.refresh(REALM, stale_token="old")
        assert info.value.invalid_grant and len(rereads) == 2

    run(body())


def test_default_is_fresh_reads_the_jwt_exp() -> None:
    async def body() -> None:
        fresh = jwt.encode({"exp": 5_000}, KEY, algorithm="HS256")
        expired = jwt.encode({"exp": 1_030}, KEY, algorithm="HS256")  # within the 60 s skew
        stored = [expired, fresh]

        async def reread(realm: str) -> str | None:
            return stored.pop(0)

        script = Script("new")
        coord = coordinator(script, reread=reread, clock=lambda: 1_000.0)
        assert await coord.refresh(REALM) == "new"
        assert await coord.refresh(REALM) == fresh
        assert script.calls == [REALM]

    run(body())


def test_on_success_runs_inside_the_lock_and_logged_out_is_not_a_failure() -> None:
    events: list[str] = []
    failures: list[RefreshError] = []

    @contextlib.asynccontextmanager
    async def lock(realm: str) -> AsyncIterator[None]:
        events.append("enter")
        try:
            yield
        finally:
            events.append("exit")

    async def refresher(realm: str) -> str:
        return "new"

    def on_success(realm: str, token: str) -> None:
        events.append("store")
        raise RefreshError(realm, Reason.LOGGED_OUT)

    async def main() -> None:
        coord = RefreshCoordinator(
            refresher, lock=lock, on_success=on_success, on_failure=failures.append
        )
        with pytest.raises(RefreshError) as info:
            await coord.refresh(REALM)
        assert info.value.reason == Reason.LOGGED_OUT
        assert coord.failed(REALM) is None

    asyncio.run(main())
    assert events == ["enter", "store", "exit"]
    assert failures == []


def test_fail_starts_one_episode() -> None:
    failures: list[RefreshError] = []

    async def refresher(realm: str) -> str:
        raise AssertionError("must not be called while failed")

    async def main() -> None:
        coord = RefreshCoordinator(refresher, on_failure=failures.append)
        err = RefreshError(REALM, "remote", status=503)
        coord.fail(err)
        coord.fail(RefreshError(REALM, "again"))
        with pytest.raises(RefreshError):
            await coord.refresh(REALM)

    asyncio.run(main())
    assert [f.reason for f in failures] == ["remote"]


def test_reason_values_are_what_hosts_see() -> None:
    # console:auth-error's `reason` and the error messages carry these strings unchanged.
    assert {r.name: r.value for r in Reason} == {
        "NETWORK_ERROR": "network error",
        "REFRESH_TIMED_OUT": "refresh timed out",
        "LOCK_TIMED_OUT": "refresh lock timed out",
        "LOGGED_OUT": "logged out",
        "CANCELLED": "cancelled",
        "RECONFIGURED": "reconfigured",
        "CLOSED": "closed",
        "REJECTED_BY_ON_SUCCESS": "token rejected by on_success",
        "REFRESH_FAILED": "refresh failed",
        "NO_REFRESHER": "no refresher configured",
        "NO_TOKEN_TO_REFRESH": "no token to refresh",
        "CALLBACK_RETURNED_NO_TOKEN": "refresh callback returned no token",
        "REFRESH_URL_RETURNED_NO_TOKEN": "refresh URL answered without a token",
        "REFRESH_URL_REDIRECTED": "refresh URL redirected",
        "TOKEN_ENDPOINT_REDIRECTED": "token endpoint redirected",
        "NO_REFRESH_TOKEN": "no refresh token for this session",
        "REFRESH_TOKEN_USED": "refresh token already used",
        "DPOP_KEY_LOST": "dpop key lost",
    }
    err = RefreshError(REALM, Reason.LOGGED_OUT)
    assert str(err) == f"{REALM}: refresh failed (logged out, no response, final)"
    assert json.dumps({"reason": err.reason}) == '{"reason": "logged out"}'
