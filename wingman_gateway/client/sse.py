"""Reading a server-sent event stream from a twisted.web.client response body."""

from __future__ import annotations

from typing import Callable

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure

from wingman_gateway.protocol.sse import MAX_LINE, Event, EventParser, StreamTooLong  # noqa: F401


class StoppableBody(Protocol):
    """A response body that can be given up: ``stop()`` closes its connection."""

    stopped = False

    def stop(self) -> None:
        """Stop reading: the connection is closed and ``connectionLost`` follows."""
        if not self.stopped:
            self.stopped = True
            if self.transport is not None:
                self.transport.stopProducing()  # type: ignore[attr-defined]  # a response body's transport is its producer


class EventStreamProtocol(StoppableBody):
    """Parses ``text/event-stream`` as the body arrives (``EventParser``).

    ``on_bytes`` is called once, when the first bytes come (the stream is
    open end to end, not held by a buffering proxy); ``done`` fires with
    the reason the body ended.
    """

    def __init__(self, on_event: Callable[[Event], None], on_bytes: Callable[[], None]) -> None:
        self.on_event = on_event
        self.on_bytes: Callable[[], None] | None = on_bytes
        self.done: Deferred[Failure] = Deferred()
        self._parser = EventParser()

    def dataReceived(self, data: bytes) -> None:
        if self.stopped:
            return
        if self.on_bytes is not None:
            on_bytes, self.on_bytes = self.on_bytes, None
            on_bytes()
        try:
            for event in self._parser.feed(data):
                self.on_event(event)
                if self.stopped:
                    return
        except StreamTooLong:
            self.stop()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self.done.called:
            self.done.callback(reason)
