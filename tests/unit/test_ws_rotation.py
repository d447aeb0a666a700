from __future__ import annotations

import pytest

from pyauth_web.tokens import DEFAULT_SKEW_SECONDS
from pyauth_web.ws_rotation import (
    CloseReason,
    RotationPolicy,
    RotationTracker,
    SocketState,
    default_is_expiry,
)


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def open_tracker(policy: RotationPolicy | None = None) -> tuple[RotationTracker, FakeClock]:
    clock = FakeClock()
    tracker = RotationTracker(policy or RotationPolicy(), clock)
    assert tracker.state is SocketState.CONNECTING
    assert tracker.opened() == []
    assert tracker.state is SocketState.OPEN
    return tracker, clock


def rotate(tracker: RotationTracker) -> bool:
    if not tracker.begin_rotation():
        return False
    tracker.end_rotation(True)
    return True


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ('{"error":"tokenExpired"}', True),
        ('{"error": "tokenExpired", "detail": "exp passed"}', True),
        ('{"error":"other"}', False),
        ('{"type":"tokenExpired"}', False),
        ('["tokenExpired"]', False),
        ('"tokenExpired"', False),
        ("tokenExpired", False),
        ('{"error":"tokenExpired"', False),
        ("", False),
        ("[" * 100_000 + "tokenExpired", False),
    ],
)
def test_default_is_expiry(message: str, expected: bool) -> None:
    assert default_is_expiry(message) is expected


def test_default_is_expiry_rejects_non_text() -> None:
    assert default_is_expiry(b'{"error":"tokenExpired"}') is False  # type: ignore[arg-type]


def test_three_rotations_allowed_then_the_fourth_closes() -> None:
    tracker, clock = open_tracker()
    for _ in range(3):
        assert rotate(tracker)
        clock.now += 1.0
    assert tracker.begin_rotation() is False
    assert tracker.state is SocketState.CLOSED
    assert tracker.closed_reason is CloseReason.ROTATION_LIMIT
    assert tracker.begin_rotation() is False


def test_window_slides() -> None:
    tracker, clock = open_tracker()
    start = clock.now
    for i in range(3):
        clock.now = start + i
        assert rotate(tracker)
    clock.now = start + 59.5  # all three still inside the window
    assert not tracker.should_rotate() and tracker.state is SocketState.OPEN
    clock.now = start + 61.0  # the first two have left it
    assert rotate(tracker)
    assert rotate(tracker)
    assert tracker.begin_rotation() is False  # start+2, +61, +61, and this one: 4
    assert tracker.closed_reason is CloseReason.ROTATION_LIMIT


def test_window_boundary_is_exclusive() -> None:
    tracker, clock = open_tracker(RotationPolicy(max_rotations=1, window_s=60.0))
    assert rotate(tracker)
    clock.now += 60.0  # the old start is not > now - 60
    assert rotate(tracker)


def test_messages_sent_during_rotation_are_flushed_in_order_once() -> None:
    tracker, _ = open_tracker()
    assert tracker.send("a") == ["a"]
    assert tracker.begin_rotation()
    assert tracker.state is SocketState.ROTATING
    assert tracker.send("b") == []
    assert tracker.send("c") == []
    assert tracker.pending == 2
    assert tracker.end_rotation(True) == ["b", "c"]
    assert tracker.state is SocketState.OPEN
    assert tracker.flush() == []
    assert tracker.send("d") == ["d"]


def test_messages_sent_before_first_open_are_flushed_on_open() -> None:
    tracker = RotationTracker(RotationPolicy(), FakeClock())
    assert tracker.send("hello") == []
    assert tracker.opened() == ["hello"]
    assert tracker.opened() == []


def test_send_while_open_keeps_order_if_driver_has_not_flushed() -> None:
    tracker, _ = open_tracker()
    tracker.begin_rotation()
    tracker.send("b")
    tracker.state = SocketState.OPEN  # a driver that reopened without flushing
    assert tracker.send("c") == ["b", "c"]
    assert tracker.flush() == []


def test_bounded_queue_drops_the_oldest_with_a_warning() -> None:
    tracker, _ = open_tracker(RotationPolicy(queue_size=3))
    tracker.begin_rotation()
    for m in "abcde":
        tracker.send(m)
    assert tracker.dropped == 2
    assert len(tracker.warnings) == 1  # one warning per overflow episode
    assert "send queue full" in tracker.warnings[0]
    assert tracker.end_rotation(True) == ["c", "d", "e"]
    tracker.begin_rotation()
    for m in "vwxyz":
        tracker.send(m)
    assert tracker.dropped == 4
    assert len(tracker.warnings) == 2  # a new episode after the flush


def test_send_after_close_raises() -> None:
    tracker, _ = open_tracker()
    tracker.close()
    assert tracker.state is SocketState.CLOSED
    assert tracker.closed_reason is CloseReason.CLOSED
    with pytest.raises(RuntimeError, match="socket closed"):
        tracker.send("x")
    assert tracker.opened() == []
    assert tracker.state is SocketState.CLOSED


def test_failed_refresh_closes_and_discards_the_buffer() -> None:
    tracker, _ = open_tracker()
    tracker.begin_rotation()
    tracker.send("lost")
    assert tracker.end_rotation(False) == []
    assert tracker.state is SocketState.CLOSED
    assert tracker.closed_reason is CloseReason.REFRESH_FAILED
    assert tracker.warnings == ["1 unsent message(s) discarded (refresh failed)"]
    assert tracker.flush() == []
    with pytest.raises(RuntimeError):
        tracker.send("x")


def test_should_rotate() -> None:
    tracker, clock = open_tracker()
    assert tracker.should_rotate('{"error":"tokenExpired"}')
    assert not tracker.should_rotate('{"error":"other"}')
    assert not tracker.should_rotate("hello", token_exp=clock.now + 3600)
    skew = DEFAULT_SKEW_SECONDS
    assert tracker.should_rotate("hello", token_exp=clock.now + skew / 2)  # within the skew
    assert tracker.should_rotate(token_exp=clock.now + skew)
    assert not tracker.should_rotate(token_exp=clock.now + skew + 1)
    assert tracker.should_rotate(token_exp=clock.now + skew + 1, skew=2 * skew)
    assert tracker.should_rotate(token_exp=clock.now - 5)  # already expired
    assert not tracker.should_rotate()


def test_no_second_rotation_while_rotating() -> None:
    tracker, _ = open_tracker()
    assert tracker.begin_rotation()
    assert not tracker.should_rotate('{"error":"tokenExpired"}')  # the old socket again
    with pytest.raises(RuntimeError):
        tracker.begin_rotation()
    tracker.close()
    assert not tracker.should_rotate('{"error":"tokenExpired"}')


def test_custom_predicate_and_validation() -> None:
    policy = RotationPolicy(is_expiry=lambda m: m == "EXPIRED")
    tracker, _ = open_tracker(policy)
    assert tracker.should_rotate("EXPIRED")
    assert not tracker.should_rotate('{"error":"tokenExpired"}')
    for bad in ({"max_rotations": 0}, {"window_s": 0.0}, {"queue_size": 0}):
        with pytest.raises(ValueError):
            RotationPolicy(**bad)  # type: ignore[arg-type]


def test_state_and_reason_values_are_what_hosts_see() -> None:
    # onStateChange receives the states; "rotation limit" is a console:auth-error reason.
    assert [s.value for s in SocketState] == ["connecting", "open", "rotating", "closed"]
    assert [r.value for r in CloseReason] == [
        "closed", "rotation limit", "refresh failed", "server closed", "connect failed"
    ]
