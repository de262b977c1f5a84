"""Reading a server-sent event stream from a twisted.web.client response body."""

from __future__ import annotations

from typing import Callable

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

# A line longer than this (no line break) ends the stream: a bridge event
# is one envelope, far smaller.
MAX_LINE = 64 * 1024 * 1024


@attrs.frozen
class Event:
    """One dispatched event: its ``id`` (if any), ``event`` type and data text."""

    id: str | None
    event: str
    data: str


class EventStreamProtocol(Protocol):
    """Parses ``text/event-stream`` (the WHATWG rules) as the body arrives.

    ``on_bytes`` is called once, when the first bytes come (the stream is
    open end to end, not held by a buffering proxy); ``done`` fires with
    the reason the body ended.
    """

    def __init__(self, on_event: Callable[[Event], None], on_bytes: Callable[[], None]) -> None:
        self.on_event = on_event
        self.on_bytes: Callable[[], None] | None = on_bytes
        self.done: Deferred[Failure] = Deferred()
        self._buffer = b""
        self._data: list[str] = []
        self._id: str | None = None
        self._event = ""
        self._stopped = False

    def stop(self) -> None:
        """Stop reading: the connection is closed and ``done`` fires."""
        if not self._stopped:
            self._stopped = True
            if self.transport is not None:
                self.transport.stopProducing()

    def dataReceived(self, data: bytes) -> None:
        if self._stopped:
            return
        if self.on_bytes is not None:
            on_bytes, self.on_bytes = self.on_bytes, None
            on_bytes()
        self._buffer += data
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                break
            line, self._buffer = self._buffer[:end], self._buffer[end + 1 :]
            self._line(line.rstrip(b"\r").decode("utf-8", "replace"))
            if self._stopped:
                return
        if len(self._buffer) > MAX_LINE:
            self._buffer = b""
            self.stop()

    def _line(self, line: str) -> None:
        if not line:
            self._dispatch()
            return
        if line.startswith(":"):
            return  # a comment: the heartbeat
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "id":
            self._id = value
        elif name == "event":
            self._event = value

    def _dispatch(self) -> None:
        if self._data:
            event = Event(self._id, self._event or "message", "\n".join(self._data))
            self._data = []
            self._event = ""
            self.on_event(event)
        self._event = ""

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if not self.done.called:
            self.done.callback(reason)
