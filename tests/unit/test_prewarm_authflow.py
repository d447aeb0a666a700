from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from pyauth_web.authflow import ForceRefresh, GetToken, Send, auth_flow
from pyauth_web.prewarm import Prewarm


def test_burst_of_ten_events_in_100ms_is_one_prewarm() -> None:
    p = Prewarm()
    deadlines = [p.event(10.0 + i * 0.01, visible=True) for i in range(10)]
    assert deadlines[-1] == 10.09 + 0.15
    assert not p.due(10.09 + 0.10)  # an earlier timer firing before the last deadline
    assert p.due(10.09 + 0.15)
    assert not p.due(10.09 + 0.20)  # nothing pending


def test_hidden_events_are_ignored_and_prewarms_are_deduped() -> None:
    p = Prewarm()
    assert p.event(0.0, visible=False) is None
    assert not p.due(1.0)
    p.event(1.0, visible=True)
    assert p.due(1.15)
    p.event(1.5, visible=True)  # a second burst within a second of the first pre-warm
    assert not p.due(1.65)
    p.event(2.5, visible=True)
    assert p.due(2.65)


@dataclass
class Resp:
    status: int


def drive(
    statuses: list[int],
    *,
    replayable: bool = True,
    token: str | None = "t1",
    refreshed: str | None = "t2",
    current: Callable[[], str | None] = lambda: "t1",
    nonce_statuses: tuple[int, ...] = (),
) -> tuple[Any, list[Any]]:
    log: list[Any] = []
    asks = lambda r: r.status in nonce_statuses  # noqa: E731 - a DPoP use_dpop_nonce answer
    flow = auth_flow(replayable=replayable, current_token=current, asks_for_nonce=asks)
    command = next(flow)
    while True:
        log.append(command)
        if isinstance(command, GetToken):
            answer: Any = token
        elif isinstance(command, Send):
            answer = Resp(statuses.pop(0))
        else:
            answer = refreshed
        try:
            command = flow.send(answer)
        except StopIteration as done:
            return done.value, log


def test_200_is_sent_once() -> None:
    resp, log = drive([200])
    assert resp.status == 200 and log == [GetToken(), Send("t1")]


def test_401_once_refreshes_and_retries_once() -> None:
    resp, log = drive([401, 200])
    assert resp.status == 200
    assert log == [GetToken(), Send("t1"), ForceRefresh("t1"), Send("t2")]


def test_401_twice_returns_401_never_loops() -> None:
    resp, log = drive([401, 401])
    assert resp.status == 401 and len([c for c in log if isinstance(c, Send)]) == 2


def test_stale_401_retries_with_current_token_without_refreshing() -> None:
    resp, log = drive([401, 200], current=lambda: "t9")
    assert resp.status == 200 and log == [GetToken(), Send("t1"), Send("t9")]


def test_failed_refresh_returns_the_original_401() -> None:
    resp, log = drive([401], refreshed=None)
    assert resp.status == 401 and log[-1] == ForceRefresh("t1")


def test_streams_and_unauthenticated_requests_are_not_retried() -> None:
    resp, log = drive([401], replayable=False)
    assert resp.status == 401 and log == [GetToken(), Send("t1")]
    resp, log = drive([401], token=None)
    assert resp.status == 401 and log == [GetToken(), Send(None)]


def test_a_driver_answering_the_wrong_kind_fails_loudly() -> None:
    flow = auth_flow(replayable=True, current_token=lambda: None)
    next(flow)
    with pytest.raises(TypeError, match="expected a token"):
        flow.send(Resp(200))  # a response where the token belongs
    flow = auth_flow(replayable=True, current_token=lambda: None)
    next(flow)
    flow.send("t1")
    with pytest.raises(TypeError, match="expected a response"):
        flow.send("not a response")


def test_a_dpop_nonce_answer_is_sent_once_more_with_the_same_token() -> None:
    resp, log = drive([299, 200], nonce_statuses=(299,))
    assert resp.status == 200 and log == [GetToken(), Send("t1"), Send("t1")]


def test_at_most_one_nonce_retry_per_request_even_across_a_refresh() -> None:
    # a nonce refusal, its retry refused (401) -> refresh -> a nonce refusal again: not retried
    resp, log = drive([299, 401, 299], nonce_statuses=(299,))
    assert resp.status == 299
    assert log == [GetToken(), Send("t1"), Send("t1"), ForceRefresh("t1"), Send("t2")]


def test_no_nonce_retry_for_a_stream_body_or_without_a_token() -> None:
    resp, log = drive([299], nonce_statuses=(299,), replayable=False)
    assert log == [GetToken(), Send("t1")]
    resp, log = drive([299], nonce_statuses=(299,), token=None)
    assert log == [GetToken(), Send(None)]


def test_a_nonce_refusal_is_never_a_reason_to_refresh() -> None:
    # the server refuses twice for a nonce (say it never exposes DPoP-Nonce): no refresh grant
    resp, log = drive([401, 401], nonce_statuses=(401,))
    assert resp.status == 401
    assert log == [GetToken(), Send("t1"), Send("t1")]
