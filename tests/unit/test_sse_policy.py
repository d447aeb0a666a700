from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyauth_web.sse import ServerSentEvent, SSEDecoder
from pyauth_web.sse_policy import (
    MIN_RETRY_MS,
    End,
    Open,
    Reconnect,
    RefreshAndReconnect,
    SSEPolicy,
    StreamState,
)

CEILINGS = [1000, 2000, 4000, 8000, 15000, 15000, 15000]  # attempts 0..6, defaults


class MaxJitter(random.Random):
    """An rng at the top of every jitter range: delays equal their ceilings."""

    def randint(self, a: int, b: int) -> int:
        return b


class MinJitter(random.Random):
    def randint(self, a: int, b: int) -> int:
        return a


def delays_of_empty_connects(policy: SSEPolicy, n: int) -> list[int]:
    """The server accepts (200) and closes at once, without an event, ``n`` times."""
    out = []
    for _ in range(n):
        assert policy.on_connect_result(200) == Open()
        action = policy.on_stream_end()
        assert isinstance(action, Reconnect)
        out.append(action.delay_ms)
    return out


def test_backoff_bounds_for_attempts_0_to_6() -> None:
    policy = SSEPolicy(rng=random.Random(1))
    assert [policy.ceiling(n) for n in range(7)] == CEILINGS
    for n, d in enumerate(CEILINGS):
        for _ in range(200):
            assert (d + 1) // 2 <= policy.delay(n) <= d
    assert SSEPolicy(rng=MaxJitter()).delay(6) == 15000
    assert SSEPolicy(rng=MinJitter()).delay(0) == 500
    assert policy.ceiling(10_000) == 15000  # no huge intermediate numbers


def test_backoff_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError):
        SSEPolicy(base_ms=0)
    with pytest.raises(ValueError):
        SSEPolicy(base_ms=2000, cap_ms=1000)
    with pytest.raises(ValueError):
        SSEPolicy().ceiling(-1)


def test_accept_and_close_immediately_never_resets_backoff() -> None:
    policy = SSEPolicy(rng=random.Random(7))
    delays = delays_of_empty_connects(policy, 10)
    assert policy.attempt == 10
    for n, delay in enumerate(delays):
        d = CEILINGS[min(n, 6)]
        assert (d + 1) // 2 <= delay <= d
    assert all(delay >= 7500 for delay in delays[4:])  # stays at the cap, no reset to 1 s
    assert delays_of_empty_connects(SSEPolicy(rng=MaxJitter()), 10) == [
        1000, 2000, 4000, 8000, 15000, 15000, 15000, 15000, 15000, 15000,
    ]  # fmt: skip


def test_failures_of_every_kind_share_one_sequence() -> None:
    policy = SSEPolicy(rng=MaxJitter())
    assert policy.on_connect_result(None) == Reconnect(1000)  # network error
    assert policy.on_connect_result(503) == Reconnect(2000)
    assert policy.on_connect_result(200) == Open()
    assert policy.state is StreamState.OPEN
    assert policy.on_stream_end() == Reconnect(4000)
    assert policy.state is StreamState.RECONNECTING
    assert policy.on_connect_result(404) == Reconnect(8000)


def test_a_real_event_resets_the_backoff() -> None:
    policy = SSEPolicy(rng=MaxJitter())
    delays_of_empty_connects(policy, 5)
    assert policy.on_connect_result(200) == Open()
    assert policy.on_event(ServerSentEvent(data="hi")) is None
    assert policy.attempt == 0
    assert policy.on_stream_end() == Reconnect(1000)
    assert policy.on_connect_result(None) == Reconnect(2000)


def test_server_retry_replaces_the_base() -> None:
    policy = SSEPolicy(rng=MaxJitter())
    policy.on_connect_result(200)
    assert policy.on_event(ServerSentEvent(data="x", retry=3000)) is None
    assert policy.server_retry_ms == 3000
    assert policy.on_stream_end() == Reconnect(3000)
    assert policy.on_connect_result(None) == Reconnect(6000)
    assert policy.on_connect_result(None) == Reconnect(12000)
    assert policy.on_connect_result(None) == Reconnect(15000)  # cap still applies
    policy.on_event(ServerSentEvent(data="y", retry=60000))  # larger than the cap
    assert policy.on_stream_end() == Reconnect(15000)
    policy.on_event(ServerSentEvent(data="z", retry=0))  # no storm: floored
    assert policy.ceiling(0) == MIN_RETRY_MS
    assert policy.ceiling(1) == 2 * MIN_RETRY_MS


def test_retry_only_block_from_decoder_is_honoured_without_resetting() -> None:
    decoder = SSEDecoder()
    policy = SSEPolicy(rng=MaxJitter())
    delays_of_empty_connects(policy, 2)
    policy.on_connect_result(200)
    assert decoder.feed("retry: 500\n\n") == []  # no data: no event dispatched
    assert decoder.retry is not None
    policy.on_retry(decoder.retry)
    assert policy.server_retry_ms == 500
    assert policy.on_stream_end() == Reconnect(2000)  # 500 * 2**2: attempt kept growing


def test_401_refreshes_once_then_expires() -> None:
    policy = SSEPolicy()
    assert policy.on_connect_result(401) == RefreshAndReconnect(delay_ms=0)
    assert policy.state is StreamState.RECONNECTING
    assert policy.on_connect_result(401) == End(StreamState.EXPIRED)
    assert policy.state is StreamState.EXPIRED
    assert policy.on_connect_result(200) == End(StreamState.EXPIRED)
    assert policy.on_stream_end() == End(StreamState.EXPIRED)


def test_401_event_401_refreshes_twice() -> None:
    policy = SSEPolicy()
    assert policy.on_connect_result(401) == RefreshAndReconnect(0)
    assert policy.on_connect_result(200) == Open()
    assert policy.on_event(ServerSentEvent(data="x")) is None
    assert policy.on_connect_result(401) == RefreshAndReconnect(0)
    assert policy.state is StreamState.RECONNECTING


def test_401_counter_survives_network_errors_but_not_an_accepted_token() -> None:
    policy = SSEPolicy()
    assert policy.on_connect_result(401) == RefreshAndReconnect(0)
    assert isinstance(policy.on_connect_result(None), Reconnect)
    assert policy.on_connect_result(401) == End(StreamState.EXPIRED)  # the fresh token was rejected

    quiet = SSEPolicy(rng=MaxJitter())  # a long quiet stream, then a new expiry
    assert quiet.on_connect_result(401) == RefreshAndReconnect(0)
    assert quiet.on_connect_result(200) == Open()
    assert quiet.on_stream_end() == Reconnect(2000)  # the 401 counted as a failed connect
    assert quiet.on_connect_result(401) == RefreshAndReconnect(0)


def test_410_expires() -> None:
    policy = SSEPolicy()
    assert policy.on_connect_result(410) == End(StreamState.EXPIRED)
    assert policy.state is StreamState.EXPIRED


def test_error_event_is_fatal() -> None:
    policy = SSEPolicy()
    policy.on_connect_result(200)
    assert policy.on_event(ServerSentEvent(event="error", data="bad")) == End(StreamState.FATAL)
    assert policy.state is StreamState.FATAL
    assert policy.on_stream_end() == End(StreamState.FATAL)


def test_nothing_reconnects_after_close() -> None:
    policy = SSEPolicy()
    policy.on_connect_result(200)
    policy.close()
    assert policy.state is StreamState.CLOSED
    for status in (None, 200, 401, 410, 500):
        assert policy.on_connect_result(status) == End(StreamState.CLOSED)
    assert policy.on_stream_end() == End(StreamState.CLOSED)
    assert policy.on_event(ServerSentEvent(data="late")) == End(StreamState.CLOSED)
    assert policy.state is StreamState.CLOSED


def test_headers() -> None:
    policy = SSEPolicy()
    assert policy.headers(None) == {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
    assert policy.headers("tok")["Authorization"] == "Bearer tok"
    decoder = SSEDecoder()
    policy.on_connect_result(200)
    for event in decoder.feed(b"id: 42\ndata: x\n\n"):
        policy.on_event(event)
    assert policy.last_event_id == "42"
    assert policy.headers("tok") == {
        "Accept": "text/event-stream",
        "Cache-Control": "no-cache",
        "Authorization": "Bearer tok",
        "Last-Event-ID": "42",
    }
    for event in decoder.feed(b"id\ndata: y\n\n"):  # an empty id resets the last event ID
        policy.on_event(event)
    assert "Last-Event-ID" not in policy.headers("tok")


def test_non_ascii_last_event_id_is_sent_as_utf8_bytes() -> None:
    policy = SSEPolicy()
    policy.on_event(ServerSentEvent(data="x", id="é"))
    value = policy.headers(None)["Last-Event-ID"]
    assert value.encode("latin-1") == "é".encode()


STEPS = st.one_of(
    st.sampled_from([None, 200, 200, 200, 401, 410, 204, 403, 404, 429, 500, 503]),
    st.just("end"),
)


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(STEPS, max_size=40),
    base=st.integers(1, 5000),
    extra=st.integers(0, 60000),
    seed=st.integers(0, 2**32),
)
def test_property_delays_capped_and_bounds_non_decreasing(
    steps: list[int | str | None], base: int, extra: int, seed: int
) -> None:
    cap = base + extra
    policy = SSEPolicy(base_ms=base, cap_ms=cap, rng=random.Random(seed))
    bounds: list[int] = []
    ended = False
    for step in steps:
        if isinstance(step, str):
            action = policy.on_stream_end()
        else:
            action = policy.on_connect_result(step)
        if ended:
            assert isinstance(action, End)
        if isinstance(action, End):
            ended = True
        if isinstance(action, Reconnect):
            bound = policy.ceiling(policy.attempt - 1)
            assert 0 < action.delay_ms <= bound <= cap
            assert action.delay_ms >= (bound + 1) // 2
            bounds.append(bound)
    assert bounds == sorted(bounds)


def test_state_values_are_what_hosts_see() -> None:
    # onStateChange in JS receives these strings: they must not change.
    assert [s.value for s in StreamState] == [
        "connecting", "open", "reconnecting", "expired", "fatal", "closed"
    ]
    assert all(isinstance(s, str) and f"{s}" == s.value for s in StreamState)
