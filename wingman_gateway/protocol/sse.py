"""Parsing ``text/event-stream`` (the WHATWG rules) from bytes as they arrive."""

from __future__ import annotations

from typing import Iterator

import attrs

# A line longer than this (no line break) ends the stream: a bridge event
# is one envelope, far smaller.
MAX_LINE = 64 * 1024 * 1024


class StreamTooLong(ValueError):
    """A line without a break passed ``MAX_LINE``."""


@attrs.frozen
class Event:
    """One dispatched event: its ``id`` (if any), ``event`` type and data text."""

    id: str | None
    event: str
    data: str


class EventParser:
    """Feed bytes in any pieces; complete events come out in order."""

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []
        self._id: str | None = None
        self._event = ""

    def feed(self, data: bytes) -> Iterator[Event]:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                break
            line, self._buffer = self._buffer[:end], self._buffer[end + 1 :]
            event = self._line(line.rstrip(b"\r").decode("utf-8", "replace"))
            if event is not None:
                yield event
        if len(self._buffer) > MAX_LINE:
            self._buffer = b""
            raise StreamTooLong(f"an event stream line passed {MAX_LINE} bytes")

    def _line(self, line: str) -> Event | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment: the heartbeat
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "id":
            self._id = value
        elif name == "event":
            self._event = value
        return None

    def _dispatch(self) -> Event | None:
        event = None
        if self._data:
            event = Event(self._id, self._event or "message", "\n".join(self._data))
            self._data = []
        self._event = ""
        return event
