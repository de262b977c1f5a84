"""The HTTP channel of a listener: a head deadline and a bound on unanswered output.

twisted.web's idle timer restarts on every byte, so a client trickling one
header line every few seconds holds its connection for ever. Here a request
head must be complete within ``header_timeout`` of the connection opening
(or of the previous response), however slowly its bytes come, and a
request with a body (``Content-Length`` or chunked) must have all of it
within ``body_timeout`` of its head; otherwise the answer is 408 and the
connection closes. Requests without a body (the long poll, the event
stream, the WebSocket upgrade) have no such deadline once their head is in.

A client may pipeline requests and never read the answers: twisted.web
answers each at once and keeps the answers in memory. Before a request is
handled, a connection whose unsent answers pass ``--max-buffer`` is cut off.
And twisted.web handles every request of a read (64 KiB: thousands of small
requests) before the event loop runs again; here one connection gets at
most ``REQUESTS_PER_TURN`` requests handled per turn, the rest waits (and
reading from it pauses) until the next, so other clients are not stalled.

A connection's first read may be taken over before twisted.web reads it:
see ``web.head`` (a plain WebSocket upgrade on a connection outside the
reserve).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel

from wingman_gateway.addresses import address_text
from wingman_gateway.connection import ABORT_GRACE
from wingman_gateway.gate import gate_of
from wingman_gateway.logs import get_logger
from wingman_gateway.sockets import socket_transport, unsent_bytes
from wingman_gateway.web.head import upgrade_head

log = get_logger("wingman_gateway.http")

# Pipelined requests one connection gets handled in one turn of the event loop.
REQUESTS_PER_TURN = 32



def _timeout_answer(what: str, seconds: float) -> bytes:
    body = (
        b'{"type":"error","payload":{"code":"INVALID_REQUEST",'
        b'"message":"request %s not complete within %s s"}}' % (what.encode(), b"%g" % seconds)
    )
    return (
        b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    )


class GatewayChannel(HTTPChannel):
    """An ``HTTPChannel`` of a ``GatewaySite`` (which gives ``clock``, ``header_timeout``,
    ``body_timeout``, ``max_unsent``, ``upgrades``)."""

    site: Any
    transport: Any
    _deadline: IDelayedCall | None = None
    _cut = False
    _handled = 0  # requests finished in this turn
    _next_turn: IDelayedCall | None = None
    _first = True  # nothing read yet

    def connectionMade(self) -> None:
        super().connectionMade()
        self._start_deadline()

    def allHeadersReceived(self) -> None:
        self._cancel_deadline()
        if self.length != 0:  # a body follows (None: chunked)
            timeout = self.site.body_timeout
            self._deadline = self.site.clock.callLater(timeout, self._late, "body", timeout)
        super().allHeadersReceived()

    def allContentReceived(self) -> None:
        self._cancel_deadline()
        unsent = unsent_bytes(socket_transport(self.transport))
        limit = self.site.max_unsent
        if unsent > limit:
            self._cut_off(f"{unsent} bytes of answers unread (limit {limit})")
            return
        super().allContentReceived()

    def requestDone(self, request: Any) -> None:
        self._handled += 1
        if self._handled == 1:
            self._next_turn = self.site.clock.callLater(0, self._new_turn)
        elif self._handled >= REQUESTS_PER_TURN:
            # The line parser keeps what is buffered (``paused``) until the next turn.
            self.paused = True
        super().requestDone(request)
        if self.paused and self.transport is not None:
            self._networkProducer.pauseProducing()  # after requestDone, which resumes it
        if self.persistent and not self._cut and self.transport is not None:
            self._start_deadline()

    def _new_turn(self) -> None:
        self._next_turn = None
        self._handled = 0
        if self.paused and not self._cut and self.transport is not None:
            self.paused = False
            if not self._waitingForTransport:
                self._networkProducer.resumeProducing()
            self.dataReceived(b"")  # handle what waited

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._next_turn is not None and self._next_turn.active():
            self._next_turn.cancel()
        self._cancel_deadline()
        super().connectionLost(reason)

    def dataReceived(self, data: bytes) -> None:
        if self._first:
            self._first = False
            if self._taken_early(data):
                return
        if not self._cut:
            super().dataReceived(data)

    def _taken_early(self, data: bytes) -> bool:
        """Whether a resource took the connection over from its first read (``web.head``)."""
        upgrades = self.site.upgrades
        if not upgrades or self._cut:
            return False
        head = upgrade_head(data)
        if head is None:
            return False
        upgrade = upgrades.get(head.path)
        if upgrade is None:
            return False
        gate = gate_of(self.transport)
        if gate is not None and gate.reserved:
            return False  # twisted.web's way answers 503 (``web.request``)
        return bool(upgrade.take(self, head))

    def stop_timers(self) -> None:
        """The connection is being handed to another protocol: this channel's timers end."""
        self.setTimeout(None)
        self._cancel_deadline()

    # -- deadlines and cut-offs ---------------------------------------------

    def _start_deadline(self) -> None:
        self._cancel_deadline()
        timeout = self.site.header_timeout
        self._deadline = self.site.clock.callLater(timeout, self._late, "head", timeout)

    def _cancel_deadline(self) -> None:
        call, self._deadline = self._deadline, None
        if call is not None and call.active():
            call.cancel()

    def _late(self, what: str, timeout: float) -> None:
        """The request ``what`` ("head" or "body") missed its deadline: 408 if it began, close."""
        self._deadline = None
        transport = self.transport
        if transport is None or self._cut:
            return
        started = what == "body" or bool(self._receivedHeaderSize or getattr(self, "_buffer", b""))
        if started:
            log.info(
                "request {what} from {peer} not complete within {timeout:g} s: closed",
                what=what, peer=address_text(transport.getPeer()), timeout=timeout,
            )
            transport.write(_timeout_answer(what, timeout))
        self._close()

    def _cut_off(self, why: str) -> None:
        log.warn("cutting off HTTP client {peer}: {why}", peer=address_text(self.transport.getPeer()), why=why)
        self._close()

    def _close(self) -> None:
        """Read nothing more; close now, abort if the close does not finish."""
        self._cut = True
        self.setRawMode()  # the line parser stops handing on what it buffered
        self._dataBuffer = []
        transport = self.transport
        transport.loseConnection()
        self.site.clock.callLater(ABORT_GRACE, transport.abortConnection)
