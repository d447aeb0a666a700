"""Sans-I/O Server-Sent Events parser (WHATWG HTML, "Interpreting an event stream").

Feed it the response body as it arrives; it hands back the events completed so far::

    decoder = SSEDecoder()
    for chunk in body:
        for event in decoder.feed(chunk):
            handle(event)
    decoder.close()

Shaped like httpx-sse / h11: a frozen event value plus a decoder object that owns all
state. No I/O and no browser imports, so it runs the same under CPython and Pyodide.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

DEFAULT_MAX_EVENT_SIZE = 1024 * 1024  # characters of pending line + data buffer

_EOL = re.compile(r"\r\n|\r|\n")
_BOM = "\ufeff"


class SSEEventTooLarge(ValueError):
    """An event (or a line of it) outgrew ``max_event_size``."""


@dataclass(frozen=True)
class ServerSentEvent:
    event: str = "message"
    data: str = ""
    id: str = ""  # the last event ID string when the event was dispatched
    retry: int | None = None  # a valid ``retry`` field of this event's block, else None


class SSEDecoder:
    """Incremental event-stream parser: ``feed()`` bytes or text, ``close()`` at the end.

    ``last_event_id`` is the stream's "last event ID string": it changes when a blank line
    is reached (spec dispatch step 1), not as soon as an ``id`` field is read, so an id in
    an incomplete trailing block never becomes the reconnection id. ``retry`` is the latest
    reconnection time in ms the server asked for (``None`` until one arrives).
    """

    def __init__(self, max_event_size: int = DEFAULT_MAX_EVENT_SIZE) -> None:
        if max_event_size <= 0:
            raise ValueError("max_event_size must be positive")
        self.max_event_size = max_event_size
        self.last_event_id = ""
        self.retry: int | None = None
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._started = False  # has any text arrived yet (for the one leading BOM)
        self._closed = False
        # Line splitter: the unterminated tail of the last chunk, and whether the last
        # chunk ended in CR (so an LF at the start of the next one belongs to it).
        self._tail: list[str] = []
        self._tail_len = 0
        self._pending_cr = False
        # The spec's buffers.
        self._data: list[str] = []
        self._data_len = 0
        self._event_type = ""
        self._id_buffer = ""
        self._block_retry: int | None = None

    def feed(self, chunk: bytes | str) -> list[ServerSentEvent]:
        """Parse the next piece of the stream; return the events it completed."""
        if self._closed:
            raise RuntimeError("SSEDecoder is closed")
        text = chunk if isinstance(chunk, str) else self._utf8.decode(chunk)
        if text and not self._started:
            self._started = True
            text = text.removeprefix(_BOM)
        events: list[ServerSentEvent] = []
        for line in self._split(text):
            self._check_size(len(line))
            event = self._process_line(line)
            if event is not None:
                events.append(event)
        self._check_size(self._tail_len)
        return events

    def close(self) -> list[ServerSentEvent]:
        """End of stream: any incomplete event is discarded, so this returns ``[]``."""
        if not self._closed:
            self._utf8.decode(b"", final=True)
            self._discard()
        return []

    def _discard(self) -> None:
        self._closed = True
        self._tail, self._tail_len, self._pending_cr = [], 0, False
        self._data, self._data_len, self._event_type = [], 0, ""

    def _check_size(self, line_len: int) -> None:
        if line_len + self._data_len > self.max_event_size:
            self._discard()
            raise SSEEventTooLarge(
                f"server-sent event exceeds max_event_size={self.max_event_size} characters"
            )

    def _split(self, text: str) -> list[str]:
        """Complete lines in ``text`` (after the buffered tail); keep the rest buffered."""
        if not text:
            return []
        if self._pending_cr:
            self._pending_cr = False
            if text[0] == "\n":  # the LF of a CRLF split across chunks
                text = text[1:]
        parts = _EOL.split(text)
        if len(parts) == 1:  # no line end in this chunk: just grow the tail
            self._tail.append(text)
            self._tail_len += len(text)
            return []
        parts[0] = "".join(self._tail) + parts[0]
        tail = parts.pop()
        self._tail, self._tail_len = ([tail] if tail else []), len(tail)
        self._pending_cr = text.endswith("\r")
        return parts

    def _process_line(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line[0] == ":":
            return None
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if name == "event":
            self._event_type = value
        elif name == "data":
            self._data.append(value)
            self._data_len += len(value) + 1
        elif name == "id":
            if "\0" not in value:
                self._id_buffer = value
        elif name == "retry" and value.isascii() and value.isdigit():
            try:
                self.retry = self._block_retry = int(value.lstrip("0") or "0")
            except ValueError:  # over Python's int-from-str digit limit: not a real delay
                pass
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        self.last_event_id = self._id_buffer
        data, event_type, retry = self._data, self._event_type, self._block_retry
        self._data, self._data_len, self._event_type, self._block_retry = [], 0, "", None
        if not data:
            return None
        # Joining with "\n" is the spec's "append value + LF", minus the final LF.
        return ServerSentEvent(
            event=event_type or "message",
            data="\n".join(data),
            id=self.last_event_id,
            retry=retry,
        )
