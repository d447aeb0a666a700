"""Refresh hardening in the sans-I/O core: deadlines, the credential URL rule, refresh tokens
bound to their session.

Deadlines run on a virtual clock: the coordinator is configured in seconds (10 s, 15 s) and each
test runs on an event loop whose clock jumps to the next timer whenever nothing is ready, so a
test of a refresh that never answers takes no wall-clock time, the bound is checked on the loop's
clock, and no load on the machine can stretch it (a scaled real clock did: 35.7 "s" in one CI run).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import selectors
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyauth_web.oauth import (
    RefreshTokenMap,
    TokenResponse,
    build_refresh_request,
    check_client_id,
    check_endpoint,
    is_loopback_host,
    session_digest,
)
from pyauth_web.refresh import (
    DEFAULT_LOCK_TIMEOUT,
    DEFAULT_REFRESH_TIMEOUT,
    BackoffPolicy,
    Reason,
    RefreshCoordinator,
    RefreshError,
    check_timeout,
    http_error,
)

REALM = "https://api.example/"
OTHER = "https://other.example/"


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on virtual time: when nothing is ready and a timer is due later, the clock
    jumps to it. Nothing ready and no timer at all is a deadlock, reported at once."""

    def __init__(self) -> None:
        self.now = 0.0
        loop = self

        class Selector(selectors.SelectSelector):
            def select(self, timeout: float | None = None) -> Any:
                ready = super().select(0)
                if ready or timeout == 0:
                    return ready
                if timeout is None:
                    raise RuntimeError("deadlock: nothing is ready and no timer is set")
                loop.now += timeout
                return ready

        super().__init__(Selector())

    def time(self) -> float:
        return self.now


class ScaledDeadlines:
    """``deadline(seconds)`` as ``asyncio.timeout(seconds)`` on the (virtual) loop clock;
    records what was asked."""

    def __init__(self) -> None:
        self.asked: list[float] = []

    def __call__(self, seconds: float) -> Any:
        self.asked.append(seconds)
        return asyncio.timeout(seconds)


class RecordingSleep:
    def __init__(self, log: list[str] | None = None) -> None:
        self.delays: list[float] = []
        self.log = log

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if self.log is not None:
            self.log.append("sleep")
        await asyncio.sleep(0)


class Lock:
    """A fake cross-tab lock: logs enter/exit; ``held`` makes it never grant."""

    def __init__(self, log: list[str], *, held: bool = False) -> None:
        self.log = log
        self.held = held
        self.waits_cancelled = 0

    @contextlib.asynccontextmanager
    async def __call__(self, realm: str) -> AsyncIterator[None]:
        if self.held:
            try:
                await asyncio.Event().wait()  # another tab never lets go
            except asyncio.CancelledError:
                self.waits_cancelled += 1
                raise
        self.log.append("enter")
        try:
            yield
        finally:
            self.log.append("exit")


class Hung:
    """A refresher whose first ``hangs`` calls never answer (until cancelled), then answers."""

    def __init__(self, hangs: int, answer: str = "new", log: list[str] | None = None) -> None:
        self.hangs = hangs
        self.answer = answer
        self.calls = 0
        self.cancelled = 0
        self.log = log

    async def __call__(self, realm: str) -> str:
        self.calls += 1
        if self.log is not None:
            self.log.append("refresh")
        if self.calls <= self.hangs:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled += 1  # where the browser refresher aborts its request
                raise
        return self.answer


def make(refresher: Any, **kw: Any) -> RefreshCoordinator:
    kw.setdefault("sleep", RecordingSleep())
    kw.setdefault("rng", random.Random(7))
    kw.setdefault("clock", lambda: 1_000.0)
    kw.setdefault("deadline", ScaledDeadlines())
    return RefreshCoordinator(refresher, **kw)


def run(coro: Awaitable[Any]) -> Any:
    async def main() -> Any:
        return await coro

    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(main())


# -- deadlines --------------------------------------------------------------------------------
def test_defaults_and_worst_case_bound() -> None:
    assert (DEFAULT_REFRESH_TIMEOUT, DEFAULT_LOCK_TIMEOUT) == (10.0, 15.0)
    assert DEFAULT_LOCK_TIMEOUT > DEFAULT_REFRESH_TIMEOUT  # a waiter outlasts one attempt
    coord = RefreshCoordinator(Hung(0))
    assert (coord.refresh_timeout, coord.lock_timeout) == (10.0, 15.0)
    assert coord.worst_case() == 3 * (15 + 10) + 0.5 + 1.0  # 76.5 s
    custom = RefreshCoordinator(
        Hung(0), refresh_timeout=1, lock_timeout=1.5, backoff=BackoffPolicy(2, 0.2, 0.2)
    )
    assert custom.worst_case() == pytest.approx(2 * 2.5 + 0.2)


@pytest.mark.parametrize("bad", [0, -1, float("inf"), float("nan"), True, "5", None])
def test_deadlines_must_be_finite_and_positive(bad: object) -> None:
    with pytest.raises(ValueError, match="refresh_timeout"):
        RefreshCoordinator(Hung(0), refresh_timeout=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lock_timeout"):
        RefreshCoordinator(Hung(0), lock_timeout=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="refreshTimeout") as info:
        check_timeout(bad, "refreshTimeout")
    assert "\n" not in str(info.value) and repr(bad) in str(info.value)
    assert check_timeout(2, "x") == 2.0 and check_timeout(0.25, "x") == 0.25


def test_a_refresh_that_never_answers_is_retried_then_fails_within_the_bound() -> None:
    async def body() -> None:
        log: list[str] = []
        deadlines = ScaledDeadlines()
        refresher = Hung(hangs=99, log=log)
        sleep = RecordingSleep(log)
        failures: list[RefreshError] = []
        coord = make(refresher, lock=Lock(log), sleep=sleep, deadline=deadlines,
                     on_failure=failures.append)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(RefreshError) as info:
            await coord.refresh(REALM)
        elapsed = loop.time() - started  # virtual seconds
        assert (info.value.reason, info.value.retryable) == (Reason.REFRESH_TIMED_OUT, True)
        assert "10 s" in (info.value.description or "")
        assert refresher.calls == refresher.cancelled == 3  # each attempt was abandoned
        # The lock is held per attempt, never during the backoff.
        attempt = ["enter", "refresh", "exit"]
        assert log == [*attempt, "sleep", *attempt, "sleep", *attempt]
        assert deadlines.asked == [15.0, 10.0] * 3
        assert failures == [info.value] and coord.failed(REALM) is info.value
        assert 3 * 10 <= elapsed < 3 * 10 + 5  # three attempt deadlines (fake sleeps take no time)
        assert elapsed <= coord.worst_case()

    run(body())


def test_a_hung_attempt_then_an_answer_succeeds() -> None:
    async def body() -> None:
        refresher = Hung(hangs=1, answer="fresh")
        successes: list[str] = []
        coord = make(refresher, on_success=lambda r, t: successes.append(t))
        assert await coord.refresh(REALM) == "fresh"
        assert (refresher.calls, refresher.cancelled) == (2, 1)
        assert successes == ["fresh"] and coord.failed(REALM) is None

    run(body())


def test_a_lock_that_is_never_granted_times_out_without_calling_the_refresher() -> None:
    async def body() -> None:
        log: list[str] = []
        lock = Lock(log, held=True)
        refresher = Hung(hangs=0)
        failures: list[RefreshError] = []
        coord = make(refresher, lock=lock, on_failure=failures.append,
                     backoff=BackoffPolicy(attempts=2))
        with pytest.raises(RefreshError) as info:
            await coord.refresh(REALM)
        assert (info.value.reason, info.value.retryable) == (Reason.LOCK_TIMED_OUT, True)
        assert refresher.calls == 0 and log == []
        assert lock.waits_cancelled == 2  # each wait withdrawn (the browser lock aborts it)
        assert [f.reason for f in failures] == [Reason.LOCK_TIMED_OUT]

    run(body())


def test_sibling_token_stored_during_our_backoff_is_used() -> None:
    async def body() -> None:
        stored = ["old", "old", "sibling-token"]

        async def reread(realm: str) -> str | None:
            return stored.pop(0) if stored else "sibling-token"

        refresher = Hung(hangs=99)
        coord = make(refresher, reread=reread, is_fresh=bool)
        assert await coord.refresh(REALM, stale_token="old") == "sibling-token"
        assert refresher.calls == 2  # the third attempt found the sibling's token first

    run(body())


def test_retryable_errors_still_follow_the_usual_rules() -> None:
    async def body() -> None:
        answers: list[Any] = [http_error(REALM, 503), "ok"]

        async def flaky(realm: str) -> str:
            outcome = answers.pop(0)
            if isinstance(outcome, BaseException):
                raise outcome
            return str(outcome)

        assert await make(flaky).refresh(REALM) == "ok"
        final = make(Hung(0), lock=Lock([], held=True), backoff=BackoffPolicy(attempts=1))
        with pytest.raises(RefreshError) as info:
            await final.refresh(REALM)
        assert info.value.reason == Reason.LOCK_TIMED_OUT  # one attempt: no retry

    run(body())


def test_logout_during_a_hung_attempt_discards_it_at_once() -> None:
    async def body() -> None:
        refresher = Hung(hangs=99)
        successes: list[str] = []
        coord = make(refresher, on_success=lambda r, t: successes.append(t),
                     deadline=lambda s: asyncio.timeout(60))  # the deadline is not what ends it
        caller = asyncio.create_task(coord.refresh(REALM))
        for _ in range(5):
            await asyncio.sleep(0)
        coord.clear()
        with pytest.raises(RefreshError) as info:
            await caller
        assert info.value.reason == Reason.LOGGED_OUT
        for _ in range(5):
            await asyncio.sleep(0)
        assert refresher.cancelled == 1 and successes == []

    run(body())


def test_superseded_flight_that_times_out_reports_nothing() -> None:
    async def body() -> None:
        failures: list[RefreshError] = []
        coord = make(Hung(hangs=99), on_failure=failures.append, backoff=BackoffPolicy(1))
        caller = asyncio.create_task(coord.refresh(REALM))
        await asyncio.sleep(0)
        coord.reset(REALM)  # the host set a new token meanwhile
        with pytest.raises(RefreshError):
            await caller
        assert failures == [] and coord.failed(REALM) is None

    run(body())


# -- the credential URL rule ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "normalized"),
    [
        ("https://idp.example/token", "https://idp.example/token"),
        ("HTTPS://IdP.Example:443/oauth/token?x=1", "https://idp.example/oauth/token?x=1"),
        ("http://127.0.0.1:8080/token", "http://127.0.0.1:8080/token"),
        ("http://127.1.2.3/token", "http://127.1.2.3/token"),
        ("http://localhost/refresh", "http://localhost/refresh"),
        ("http://LOCALHOST:9/refresh", "http://localhost:9/refresh"),
        ("http://[::1]:9/token", "http://[::1]:9/token"),
    ],
)
def test_check_endpoint_accepts(url: str, normalized: str) -> None:
    assert check_endpoint(url, "oauth.tokenEndpoint") == normalized


@pytest.mark.parametrize(
    "url",
    [
        "http://idp.example/token",  # plain http off loopback
        "http://127.evil.example/token",  # a name that merely starts like loopback
        "http://localhost.evil.example/token",
        "http://127.0.0.1.nip.io/token",
        "http://10.0.0.1/token",
        "http://[::2]/token",
        "/token",
        "token",
        "//idp.example/token",
        "javascript:alert(1)",
        "data:text/plain,x",
        "ftp://idp.example/token",
        "https://user:pw@idp.example/token",
        "https://user@idp.example/token",
        "https://idp.example/token#frag",
        "https://idp.example/token#",
        "https://idp.example\\@evil.example/token",
        "https://idp.example/to ken",
        "https://idp.example/token\n",
        "https://idp.example:99999/token",
        "",
        None,
        42,
        ["https://idp.example/token"],
    ],
)
def test_check_endpoint_rejects_with_one_line_naming_the_option(url: object) -> None:
    with pytest.raises(ValueError) as info:
        check_endpoint(url, "refreshURL")
    message = str(info.value)
    assert message.startswith("refreshURL ") and "\n" not in message
    assert repr(url) in message


def test_one_rule_for_both_urls() -> None:
    # build_refresh_request applies the same rule to the token endpoint it is given.
    with pytest.raises(ValueError, match="https"):
        build_refresh_request("http://127.evil.example/token", "c", "r")
    assert build_refresh_request("http://127.0.0.1/t", "c", "r").url == "http://127.0.0.1/t"


def test_loopback_hosts_and_client_id() -> None:
    assert is_loopback_host("127.0.0.1") and is_loopback_host("127.255.0.9")
    assert is_loopback_host("::1") and is_loopback_host("[::1]") and is_loopback_host("LocalHost")
    for host in ("128.0.0.1", "127.example", "localhost.example", "0.0.0.0", ""):
        assert not is_loopback_host(host), host
    assert check_client_id("spa") == "spa"
    for bad in ("", "  ", None, 42):
        with pytest.raises(ValueError, match="oauth.clientId"):
            check_client_id(bad)


# -- refresh tokens bound to their session ----------------------------------------------------------
def response(access: str, refresh: str | None) -> TokenResponse:
    return TokenResponse(access, refresh, 300.0, "Bearer")


def test_refresh_token_is_handed_out_only_for_its_session() -> None:
    tokens = RefreshTokenMap()
    tokens.set(REALM, "rt-alice-0", "at-alice-0")
    assert tokens.for_session(REALM, "at-alice-0") == "rt-alice-0"
    assert tokens.for_session(REALM, "at-bob") is None  # another session
    assert tokens.for_session(REALM, None) is None  # logged out
    assert tokens.for_session(OTHER, "at-alice-0") is None  # another realm
    tokens.set(REALM, None, "at-bob")  # a session without a refresh token drops the old one
    assert tokens.realms() == [] and tokens.dumps() is None
    with pytest.raises(ValueError, match="refreshToken"):
        tokens.set(REALM, "", "at")


def test_rotation_pairs_the_new_refresh_token_with_the_new_access_token() -> None:
    tokens = RefreshTokenMap()
    tokens.set(REALM, "rt-0", "at-0")
    assert tokens.rotate(REALM, "rt-0", "at-0", response("at-1", "rt-1"))
    assert tokens.for_session(REALM, "at-1") == "rt-1"
    assert tokens.for_session(REALM, "at-0") is None
    # A server that does not rotate: the same refresh token, paired with the new access token.
    assert tokens.rotate(REALM, "rt-1", "at-1", response("at-2", None))
    assert tokens.for_session(REALM, "at-2") == "rt-1"


def test_rotation_after_the_session_changed_changes_nothing() -> None:
    tokens = RefreshTokenMap()
    tokens.set(REALM, "rt-alice-0", "at-alice-0")
    before = tokens.dumps()
    # The host wrote bob's session meanwhile: alice's reply must be discarded.
    assert not tokens.rotate(REALM, "rt-alice-0", "at-bob", response("at-alice-1", "rt-1"))
    # Logged out (no session, or no refresh token any more).
    assert not tokens.rotate(REALM, "rt-alice-0", None, response("at-alice-1", "rt-1"))
    assert tokens.dumps() == before
    tokens.remove(REALM)
    assert not tokens.rotate(REALM, "rt-alice-0", "at-alice-0", response("at-1", "rt-1"))
    assert tokens.dumps() is None


def test_serialized_form_round_trips_and_holds_no_access_token() -> None:
    tokens = RefreshTokenMap()
    tokens.set(REALM, "rt-a", "at-a")
    tokens.set(OTHER, "rt-b", "at-b")
    raw = tokens.dumps()
    assert raw is not None and "at-a" not in raw
    assert json.loads(raw)[REALM] == {"refresh_token": "rt-a", "session": session_digest("at-a")}
    again = RefreshTokenMap.loads(raw)
    assert again.dumps() == raw and again.dropped == 0
    assert again.for_session(OTHER, "at-b") == "rt-b"
    again.clear()
    assert again.dumps() is None


GOOD = {"refresh_token": "rt", "session": session_digest("at")}


@pytest.mark.parametrize(
    "raw",
    [
        "{not json",
        "[1, 2]",
        '"a string"',
        "null",
        json.dumps({REALM: "rt-old-format"}),  # no pairing: never used
        json.dumps({REALM: {"refresh_token": "rt"}}),
        json.dumps({REALM: {"refresh_token": "", "session": GOOD["session"]}}),
        json.dumps({REALM: {"refresh_token": 7, "session": GOOD["session"]}}),
        json.dumps({REALM: {"refresh_token": "rt", "session": "abc"}}),
        json.dumps({REALM: {"refresh_token": "rt", "session": GOOD["session"].upper()}}),
        json.dumps({"not a url": GOOD}),
        json.dumps({"HTTPS://API.EXAMPLE/": GOOD}),  # not normalized
        json.dumps({"https://api.example/x?q=1": GOOD}),
        "[" * 100_000,
    ],
)
def test_corrupt_stored_values_are_dropped(raw: str) -> None:
    tokens = RefreshTokenMap.loads(raw)
    assert tokens.realms() == [] and tokens.dropped >= 1
    assert tokens.for_session(REALM, "at") is None


def test_good_entries_survive_beside_corrupt_ones() -> None:
    raw = json.dumps({REALM: GOOD, OTHER: "rt-old-format"})
    tokens = RefreshTokenMap.loads(raw)
    assert tokens.realms() == [REALM] and tokens.dropped == 1
    assert tokens.for_session(REALM, "at") == "rt"
    assert RefreshTokenMap.loads(None).realms() == []


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@given(st.one_of(st.text(), json_values.map(json.dumps)))
def test_loads_never_raises_and_keeps_only_valid_entries(raw: str) -> None:
    tokens = RefreshTokenMap.loads(raw)
    for realm in tokens.realms():
        assert RefreshTokenMap.loads(tokens.dumps()).realms() == tokens.realms()
        assert realm.endswith("/")


@given(
    st.dictionaries(
        st.sampled_from([REALM, OTHER, "http://127.0.0.1:8/app/"]),
        st.tuples(st.text(min_size=1), st.text()),
    )
)
def test_round_trip_property(entries: dict[str, tuple[str, str]]) -> None:
    tokens = RefreshTokenMap()
    for realm, (refresh, access) in entries.items():
        tokens.set(realm, refresh, access)
    again = RefreshTokenMap.loads(tokens.dumps())
    for realm, (refresh, access) in entries.items():
        assert again.for_session(realm, access) == refresh
    assert again.realms() == sorted(entries)
