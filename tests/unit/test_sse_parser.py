"""Conformance tests for pyauth_web.sse against WHATWG HTML 9.2.6 "Interpreting an event stream".

https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyauth_web.sse import DEFAULT_MAX_EVENT_SIZE, ServerSentEvent, SSEDecoder, SSEEventTooLarge

Ev = tuple[str, str, str]  # (event type, data, last event ID)


@dataclass(frozen=True)
class Case:
    id: str
    rule: str  # the spec text the case checks, quoted or paraphrased
    stream: bytes
    events: list[Ev]
    retry: int | None = None  # decoder.retry after the stream
    last_event_id: str | None = None  # decoder.last_event_id after the stream, when checked


CASES = [
    # --- The spec's own examples -------------------------------------------------------------
    Case(
        "spec-yhoo",
        "data: YHOO / data: +2 / data: 10 + blank line -> data 'YHOO\\n+2\\n10'",
        b"data: YHOO\ndata: +2\ndata: 10\n\n",
        [("message", "YHOO\n+2\n10", "")],
    ),
    Case(
        "spec-ids",
        "first event sets id 1; 'id' with no value resets the last event ID to ''; "
        "'data:  third event' fires ' third event' (a single leading space kept)",
        b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\n"
        b"data:  third event\n\n",
        [
            ("message", "first event", "1"),
            ("message", "second event", ""),
            ("message", " third event", ""),
        ],
        last_event_id="",
    ),
    Case(
        "spec-empty-data",
        "'data' alone fires ''; two 'data' lines fire '\\n'; the last block "
        "is discarded because it is not followed by a blank line",
        b"data\n\ndata\ndata\n\ndata:",
        [("message", "", ""), ("message", "\n", "")],
    ),
    Case(
        "spec-space-optional",
        "'data:test' and 'data: test' fire two identical events: the "
        "space after the colon is ignored if present",
        b"data:test\n\ndata: test\n\n",
        [("message", "test", ""), ("message", "test", "")],
    ),
    # --- Line endings --------------------------------------------------------------------------
    Case(
        "crlf",
        "a line can end with a CRLF character pair",
        b"data: a\r\ndata: b\r\n\r\n",
        [("message", "a\nb", "")],
    ),
    Case(
        "cr-only",
        "a single CR not followed by LF ends a line",
        b"data: a\rdata: b\r\r",
        [("message", "a\nb", "")],
    ),
    Case(
        "lf-only",
        "a single LF not preceded by CR ends a line",
        b"data: a\ndata: b\n\n",
        [("message", "a\nb", "")],
    ),
    Case(
        "mixed-endings",
        "CRLF, LF and CR may be mixed in one stream",
        b"data: a\r\ndata: b\rdata: c\n\r\n",
        [("message", "a\nb\nc", "")],
    ),
    Case(
        "crlf-is-one-line-end",
        "CRLF is one line end, not a CR line end followed by a blank "
        "LF line (which would dispatch early)",
        b"data: a\r\ndata: b\r\n\r\n",
        [("message", "a\nb", "")],
    ),
    Case(
        "lf-cr-is-two-line-ends",
        "LF followed by CR is two line ends (a blank line)",
        b"data: a\n\rdata: b\n\n",
        [("message", "a", ""), ("message", "b", "")],
    ),
    # --- Decoding and BOM ---------------------------------------------------------------------
    Case(
        "bom-stripped",
        "one leading U+FEFF BYTE ORDER MARK is stripped",
        b"\xef\xbb\xbfdata: x\n\n",
        [("message", "x", "")],
    ),
    Case(
        "bom-only-once",
        "only one leading BOM is stripped; a second one is part of the field "
        "name '\\ufeffdata', an unknown field",
        b"\xef\xbb\xbf\xef\xbb\xbfdata: x\n\n",
        [],
    ),
    Case(
        "bom-in-data-kept",
        "a BOM that is not at the start of the stream is ordinary text",
        b"data: \xef\xbb\xbfx\n\n",
        [("message", "\ufeffx", "")],
    ),
    Case(
        "utf8", "streams are decoded as UTF-8", "data: é€😀\n\n".encode(), [("message", "é€😀", "")]
    ),
    Case(
        "utf8-invalid-replaced",
        "UTF-8 decode replaces invalid bytes with U+FFFD",
        b"data: a\xffb\n\n",
        [("message", "a\ufffdb", "")],
    ),
    # --- Line kinds ---------------------------------------------------------------------------
    Case(
        "comment",
        "if the line starts with ':', ignore the line",
        b": hello\ndata: x\n:data: y\n\n",
        [("message", "x", "")],
    ),
    Case("comment-only-block", "a block of only comments fires nothing", b": ping\n\n", []),
    Case(
        "no-colon-field",
        "a line without ':' is a field name with the empty string as value",
        b"data: a\ndata\ndata: b\n\n",
        [("message", "a\n\nb", "")],
    ),
    Case(
        "first-colon-splits",
        "field is the text before the FIRST ':', value the text after",
        b"data: a: b:c\n\n",
        [("message", "a: b:c", "")],
    ),
    Case(
        "one-space-removed",
        "if value starts with a SPACE, remove it (only that one)",
        b"data:  two\n\n",
        [("message", " two", "")],
    ),
    Case(
        "tab-not-removed",
        "only U+0020 SPACE is removed after the colon",
        b"data:\tx\n\n",
        [("message", "\tx", "")],
    ),
    Case(
        "unknown-field",
        "otherwise, the field is ignored",
        b"foo: bar\ndata: x\nretries: 5\n\n",
        [("message", "x", "")],
    ),
    Case(
        "case-sensitive",
        "field names must be compared literally, with no case folding",
        b"Data: x\nEVENT: e\ndata: y\n\n",
        [("message", "y", "")],
    ),
    Case("space-before-colon", "'data : x' has field name 'data ' (unknown)", b"data : x\n\n", []),
    Case(
        "nul-in-data",
        "any-char includes U+0000 in data",
        b"data: a\x00b\n\n",
        [("message", "a\x00b", "")],
    ),
    # --- event ---------------------------------------------------------------------------------
    Case(
        "event-type",
        "'event' sets the event type buffer; type defaults to 'message'; "
        "the buffer is reset after dispatch",
        b"event: add\ndata: 1\n\ndata: 2\n\n",
        [("add", "1", ""), ("message", "2", "")],
    ),
    Case(
        "event-empty-is-message",
        "an empty event type buffer gives type 'message'",
        b"event\ndata: x\n\n",
        [("message", "x", "")],
    ),
    Case(
        "event-reset-without-data",
        "if the data buffer is empty, set the data buffer and "
        "the event type buffer to the empty string and return",
        b"event: lost\n\ndata: x\n\n",
        [("message", "x", "")],
    ),
    # --- id ------------------------------------------------------------------------------------
    Case(
        "id-nul-ignored",
        "if the id value contains U+0000 NULL, ignore the field",
        b"id: 5\ndata: a\n\nid: 6\x00\ndata: b\n\n",
        [("message", "a", "5"), ("message", "b", "5")],
        last_event_id="5",
    ),
    Case(
        "id-empty-resets",
        "'id:' with an empty value sets the last event ID to ''",
        b"id: 5\ndata: a\n\nid:\ndata: b\n\n",
        [("message", "a", "5"), ("message", "b", "")],
    ),
    Case(
        "id-persists",
        "the last event ID buffer does not get reset: later events keep it",
        b"id: 7\ndata: a\n\ndata: b\n\n",
        [("message", "a", "7"), ("message", "b", "7")],
        last_event_id="7",
    ),
    Case(
        "id-set-at-blank-line",
        "dispatch step 1 sets the last event ID string even when no "
        "event fires (empty data buffer)",
        b"id: 9\n\n",
        [],
        last_event_id="9",
    ),
    Case(
        "id-in-incomplete-block",
        "an unfinished block is discarded, so its id never becomes the last event ID string",
        b"id: 1\ndata: a\n\nid: 2\ndata: b",
        [("message", "a", "1")],
        last_event_id="1",
    ),
    # --- retry ---------------------------------------------------------------------------------
    Case(
        "retry-digits",
        "if the retry value consists of only ASCII digits, set the reconnection time to it",
        b"retry: 1000\ndata: x\n\n",
        [("message", "x", "")],
        retry=1000,
    ),
    Case(
        "retry-invalid-ignored",
        "otherwise (not only ASCII digits), ignore the field",
        b"retry: 1000\nretry: 10x\nretry: -5\nretry: 1.5\nretry:  7\nretry: \xd9\xa3\n"
        b"retry:\ndata: x\n\n",
        [("message", "x", "")],
        retry=1000,
    ),
    Case(
        "retry-without-event",
        "retry applies as soon as it is read, even in a block that fires no event",
        b"retry: 5\n\n",
        [],
        retry=5,
    ),
    Case(
        "retry-persists",
        "the latest valid retry wins and persists",
        b"retry: 5\ndata: a\n\nretry: 0\n\ndata: b\n\n",
        [("message", "a", ""), ("message", "b", "")],
        retry=0,
    ),
    # --- dispatch ------------------------------------------------------------------------------
    Case(
        "blank-lines-no-event",
        "if the data buffer is empty at a blank line, nothing fires",
        b"\n\n\r\n\r\n",
        [],
    ),
    Case(
        "incomplete-discarded",
        "once the end of the file is reached, any pending data must be discarded",
        b"data: a\n\ndata: b\n",
        [("message", "a", "")],
    ),
    Case(
        "incomplete-cr-discarded",
        "a block ending in a single line end is still incomplete",
        b"data: a\r",
        [],
    ),
]


Parsed = tuple[list[ServerSentEvent], SSEDecoder]


def _parse(chunks: Sequence[bytes | str], **kwargs: int) -> Parsed:
    decoder = SSEDecoder(**kwargs)
    events: list[ServerSentEvent] = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    events += decoder.close()
    return events, decoder


@pytest.mark.parametrize("mode", ["whole", "bytewise"])
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_conformance(case: Case, mode: str) -> None:
    assert case.rule
    if mode == "whole":
        chunks = [case.stream]
    else:
        chunks = [case.stream[i : i + 1] for i in range(len(case.stream))]
    events, decoder = _parse(chunks)
    assert [(e.event, e.data, e.id) for e in events] == case.events
    assert decoder.retry == case.retry
    if case.last_event_id is not None:
        assert decoder.last_event_id == case.last_event_id


def test_case_ids_unique() -> None:
    assert len({c.id for c in CASES}) == len(CASES)


def test_event_retry_is_per_block() -> None:
    events, decoder = _parse([b"retry: 500\ndata: a\n\ndata: b\n\n"])
    assert events == [ServerSentEvent(data="a", retry=500), ServerSentEvent(data="b")]
    assert decoder.retry == 500


def test_crlf_split_across_chunks_is_one_line_end() -> None:
    events, _ = _parse([b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"])
    assert events == [ServerSentEvent(data="a\nb")]


def test_cr_then_empty_chunk_then_lf() -> None:
    # An empty chunk must not forget the pending CR (else the LF would be a blank line).
    events, _ = _parse([b"data: a\r", b"", b"\ndata: \xc3", b"\xa9\r", b"", b"\n\n"])
    assert events == [ServerSentEvent(data="a\n\u00e9")]


def test_multibyte_split_across_chunks() -> None:
    raw = "data: é😀\n\n".encode()
    events, _ = _parse([raw[:7], raw[7:9], raw[9:11], raw[11:]])
    assert events == [ServerSentEvent(data="é😀")]


def test_str_chunks_accepted() -> None:
    decoder = SSEDecoder()
    assert decoder.feed("\ufeffdata: x\r") == []
    assert decoder.feed("\n\r\n") == [ServerSentEvent(data="x")]


# --- Chunking invariance (hypothesis) ----------------------------------------------------------

_value = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=8)
_line = st.one_of(
    st.just(""),
    _value.map(lambda v: ":" + v),
    st.builds(
        lambda name, sep, v: name + sep + v,
        st.sampled_from(["data", "event", "id", "retry", "foo", "\ufeff", "data "]),
        st.sampled_from(["", ":", ": "]),
        _value | st.integers(0, 10**6).map(str) | st.just("1\x002"),
    ),
)
_stream = st.builds(
    lambda bom, lines, tail: (bom + "".join(lines) + tail).encode(),
    st.sampled_from(["", "\ufeff", "\ufeff\ufeff"]),
    st.lists(st.tuples(_line, st.sampled_from(["\n", "\r", "\r\n"])).map("".join), max_size=30),
    st.sampled_from(["", "data: tail", "\r"]),
)


def _result(chunks: list[bytes]) -> tuple[list[ServerSentEvent], str, int | None]:
    events, decoder = _parse(chunks)
    return events, decoder.last_event_id, decoder.retry


@settings(deadline=None, max_examples=300)
@given(stream=_stream, data=st.data())
def test_chunking_does_not_change_the_result(stream: bytes, data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12), label="cuts"))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    whole = _result([stream])
    assert _result(chunks) == whole
    assert _result([stream[i : i + 1] for i in range(len(stream))]) == whole
    # Already-decoded text gives the same events too.
    text_events, _ = _parse([stream.decode()])
    assert text_events == whole[0]


# --- Bounded buffering ---------------------------------------------------------------------------


def test_default_limit_is_one_mib() -> None:
    assert SSEDecoder().max_event_size == DEFAULT_MAX_EVENT_SIZE == 1024 * 1024
    with pytest.raises(SSEEventTooLarge):
        SSEDecoder().feed(b"data: " + b"x" * (1024 * 1024) + b"\n")


def test_data_over_limit_raises_naming_the_limit() -> None:
    decoder = SSEDecoder(max_event_size=100)
    with pytest.raises(SSEEventTooLarge, match="max_event_size=100"):
        decoder.feed(b"data: " + b"x" * 200 + b"\n\n")
    assert issubclass(SSEEventTooLarge, ValueError)


def test_many_data_lines_accumulating_over_limit_raise() -> None:
    decoder = SSEDecoder(max_event_size=100)
    with pytest.raises(SSEEventTooLarge):
        for _ in range(20):
            decoder.feed(b"data: 0123456789\n")


def test_long_line_without_newline_raises_early() -> None:
    limit, piece = 1000, b"y" * 10
    decoder = SSEDecoder(max_event_size=limit)
    fed = 0
    with pytest.raises(SSEEventTooLarge):
        decoder.feed(b"data: ")
        while fed < 100 * limit:
            decoder.feed(piece)
            fed += len(piece)
    assert fed <= limit  # it stopped as soon as the pending line passed the limit
    with pytest.raises(RuntimeError):  # an oversized stream cannot be resumed
        decoder.feed(b"\n\n")


def test_events_under_limit_pass() -> None:
    # Each event is under the limit; together they are far over it (buffers reset per event).
    block = b"id: 1\nevent: e\ndata: " + b"z" * 60 + b"\n\n"
    events, _ = _parse([block * 50], max_event_size=100)
    assert len(events) == 50
    assert events[0] == ServerSentEvent(event="e", data="z" * 60, id="1")


# --- Lifecycle -----------------------------------------------------------------------------------


def test_feed_after_close_raises() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n\ndata: b") == [ServerSentEvent(data="a")]
    assert decoder.close() == []
    assert decoder.close() == []
    with pytest.raises(RuntimeError, match="closed"):
        decoder.feed(b"\n\n")
    with pytest.raises(RuntimeError):
        decoder.feed("data: c\n\n")


def test_rejects_non_positive_limit() -> None:
    with pytest.raises(ValueError):
        SSEDecoder(max_event_size=0)
