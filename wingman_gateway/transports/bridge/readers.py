"""The two ways a bridge client reads: a held long poll, or an event stream.

Both confirm what the client says it has (``after`` / ``Last-Event-ID``),
attach to the session (a newer reader replaces an older one), deliver what
is queued after that point, and detach when their request ends, which
starts the session's timeout.
"""

from __future__ import annotations

import json
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure
from twisted.web.server import Request
from zope.interface import implementer

from wingman_gateway.transports.bridge.session import BridgeSession, IReader
from wingman_gateway.connection import SLOW_CONSUMER
from wingman_gateway.logs import get_logger
from wingman_gateway.sockets import socket_transport, unsent_bytes

log = get_logger("wingman_gateway.bridge")


def _closed_json(status: int, reason: str) -> bytes:
    return json.dumps({"code": status, "reason": reason}).encode("utf-8")


@implementer(IReader)
class PollReader:
    """``GET /bridge/poll``: answers at once if anything is queued, else holds."""

    def __init__(
        self, session: BridgeSession, request: Request, after: int, timeout: float
    ) -> None:
        self.session = session
        self.request = request
        self.after = after
        self.timeout = timeout
        self._timer: IDelayedCall | None = None
        self._flush: IDelayedCall | None = None
        self._done = False

    def start(self) -> None:
        """Answer now, or hold the request until messages come or time runs out."""
        session = self.session
        session.confirm(self.after)
        if session.ended is not None:
            self._answer(session.ended)
            return
        session.attach(self)
        if session.queue.after(self.after):
            self._answer()
            return
        clock = session.bridge.clock
        self._timer = clock.callLater(self.timeout, self._answer)
        self.request.notifyFinish().addErrback(self._gone)

    # -- IReader ----------------------------------------------------------

    def wake(self) -> None:
        # Wait for the end of this reactor turn, so that what one event
        # queues (a join's presence notices, a burst) goes in one answer.
        if self._flush is None and not self._done:
            self._flush = self.session.bridge.clock.callLater(0, self._answer)

    def replaced(self) -> None:
        # An empty answer: what is queued now goes to the newer poll only.
        self._answer(empty=True)

    def end(self, status: int, reason: str) -> None:
        self._answer((status, reason))

    # -- answering --------------------------------------------------------

    def _answer(self, closed: tuple[int, str] | None = None, empty: bool = False) -> None:
        if self._done:
            return
        self._done = True
        self._cancel_timers()
        self.session.detach(self)
        items = [
            b'{"seq":%d,"envelope":%s}' % (seq, data)
            for seq, data in ([] if empty else self.session.queue.after(self.after))
        ]
        body = b'{"messages":[' + b",".join(items) + b"]"
        if closed is not None:
            body += b',"closed":' + _closed_json(*closed)
        body += b"}"
        request = self.request
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"content-length", b"%d" % len(body))
        request.write(body)
        request.finish()

    def _gone(self, reason: Failure) -> None:
        """The client went away before the answer (its messages stay queued)."""
        if self._done:
            return
        self._done = True
        self._cancel_timers()
        self.session.detach(self)

    def _cancel_timers(self) -> None:
        for call in (self._timer, self._flush):
            if call is not None and call.active():
                call.cancel()
        self._timer = self._flush = None


def sse_event(seq: int, data: bytes) -> bytes:
    """One server-sent event; JSON with line breaks becomes several data lines."""
    lines = data.splitlines() or [b""]
    return b"id: %d\n" % seq + b"".join(b"data: " + line + b"\n" for line in lines) + b"\n"


@implementer(IReader)
class StreamReader:
    """``GET /bridge/sse``: queued and new messages as server-sent events."""

    def __init__(self, session: BridgeSession, request: Request, after: int) -> None:
        self.session = session
        self.request = request
        self.sent = after
        self._heartbeat: LoopingCall | None = None
        self._done = False
        channel = getattr(request, "channel", None)
        self._transport = getattr(channel, "transport", None)
        self._socket = socket_transport(self._transport)

    def start(self) -> None:
        session = self.session
        request = self.request
        session.confirm(self.sent)
        request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"x-accel-buffering", b"no")
        # The first bytes at once: the client (and any proxy) sees the
        # stream open; ``retry`` paces a browser's reconnects.
        request.write(b": wingman bridge stream\nretry: 1000\n\n")
        if session.ended is not None:
            self.end(*session.ended)
            return
        session.attach(self)
        self.request.notifyFinish().addErrback(self._gone)
        self._heartbeat = LoopingCall(self._beat)
        self._heartbeat.clock = session.bridge.clock
        self._heartbeat.start(session.bridge.options.heartbeat, now=False)
        self.wake()

    def wake(self) -> None:
        if self._done:
            return
        pending = self.session.queue.after(self.sent)
        if pending:
            if unsent_bytes(self._socket) > self.session.bridge.router.limits.max_buffer:
                self._unread()
                return
            self.sent = pending[-1][0]
            self.request.write(b"".join(sse_event(seq, data) for seq, data in pending))

    def replaced(self) -> None:
        if not self._done:
            self.request.write(b": replaced by a newer reader\n\n")
            self._finish()

    def end(self, status: int, reason: str) -> None:
        if self._done:
            return
        self.wake()
        self.request.write(b"event: close\ndata: " + _closed_json(status, reason) + b"\n\n")
        self._finish()

    def _unread(self) -> None:
        """The client stopped reading its stream: drop the stream, keep the session.

        Its messages stay queued (the queue's bounds apply) for when it
        resumes; what was written to the dead stream is thrown away.
        """
        unsent = unsent_bytes(self._socket)
        log.warn(
            "event stream of node {nodeId} is not read ({unsent} bytes unsent): dropped; "
            "its messages stay queued",
            nodeId=self.session.node.node_id,
            unsent=unsent,
        )
        session = self.session
        session.bridge.router.events.emit("dropped", transport=session.transport_name,
                                          reason=SLOW_CONSUMER)
        self._stop()
        if self._transport is not None:
            self._transport.abortConnection()

    def _beat(self) -> None:
        self.request.write(b": keepalive\n\n")

    def _finish(self) -> None:
        self._stop()
        self.request.finish()

    def _gone(self, reason: Failure) -> None:
        if not self._done:
            self._stop()

    def _stop(self) -> None:
        self._done = True
        if self._heartbeat is not None and self._heartbeat.running:
            self._heartbeat.stop()
        self.session.detach(self)

