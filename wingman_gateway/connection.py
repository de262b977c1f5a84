"""The seam between the Router and the transports.

Every transport (WebSocket, HTTP bridge, SSH) adapts its connections to
``IConnection``; the Router never sees anything else.
"""

from __future__ import annotations

from typing import Any, Callable

from zope.interface import Attribute, Interface, implementer
from twisted.internet.interfaces import IPushProducer, IReactorTime

from wingman_gateway.envelope import encode as encode_envelope
from wingman_gateway.logs import get_logger
from wingman_gateway.sockets import socket_transport, unsent_bytes

log = get_logger("wingman_gateway.connection")

# Close statuses, in WebSocket's numbering; other transports map them.
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_TRY_AGAIN = 1013

# Why a node left when it stopped reading (its presence reason, too).
SLOW_CONSUMER = "slow consumer"

# How long a cut-off client has to take its close before it is aborted.
ABORT_GRACE = 2.0


class Outbound:
    """One encoded envelope on its way to one or many connections.

    Encoded once per message, however many recipients; a transport that
    frames data (WebSocket) caches its framing here under its own key, so
    a broadcast is framed once too.
    """

    __slots__ = ("data", "frames")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.frames: dict[Any, bytes] = {}


class Reply(Outbound):
    """The Router's direct answer to one request (``ack``, ``error``, ``pong``).

    Keeps the envelope it encodes, so a transport that answers requests one
    by one (the HTTP bridge) learns the outcome without parsing bytes.
    """

    __slots__ = ("envelope",)

    def __init__(self, envelope: dict[str, Any]) -> None:
        super().__init__(encode_envelope(envelope))
        self.envelope = envelope

    @property
    def code(self) -> str | None:
        """The error code of an ``error`` reply; None for an ``ack`` or ``pong``."""
        if self.envelope.get("type") != "error":
            return None
        code: str = self.envelope["payload"]["code"]
        return code

    @property
    def details(self) -> dict[str, Any]:
        """The error's ``details`` (empty for other replies)."""
        payload = self.envelope.get("payload")
        return (payload or {}).get("details") or {} if isinstance(payload, dict) else {}


class IConnection(Interface):
    """A client connection as the Router sees it."""

    transport_name = Attribute("Short transport name for /stats: 'websocket', 'http', 'ssh'.")
    peer = Attribute("Printable peer address, for logs and /stats.")

    def send(message: Outbound) -> None:
        """Queue one envelope for delivery; never blocks."""

    def close(status: int, reason: str) -> None:
        """Close the connection; ``reason`` is shown to the client if possible."""


class Coalescer:
    """Writes each connection's outbound data once per reactor turn.

    A fan-out queues a frame on every recipient; the recipients then write
    everything queued for them in one call when the turn ends. Per delivery
    that is a list append instead of a trip through the transport (buffer
    bookkeeping, producer checks, epoll registration).
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._dirty: list[Any] = []
        self._call: Any = None

    def add(self, conn: Any) -> None:
        """``conn.flush()`` will be called once, at the end of this turn."""
        self._dirty.append(conn)
        if self._call is None:
            self._call = self._clock.callLater(0, self._flush)

    def _flush(self) -> None:
        self._call = None
        dirty, self._dirty = self._dirty, []
        for conn in dirty:
            conn.flush()


@implementer(IPushProducer)
class OutboundGuard:
    """Cuts off a client whose unsent outbound data passes a bound.

    Registered as the streaming producer of the client's transport, it is
    told when the transport's buffer fills (``pauseProducing``); only from
    then on are writes checked against the bound, so the common path costs
    one attribute test.
    """

    __slots__ = ("limit", "paused", "_on_exceeded", "_socket")

    def __init__(self, transport: Any, limit: int, on_exceeded: Callable[[int], None]) -> None:
        self.limit = limit
        self.paused = False
        self._on_exceeded = on_exceeded
        self._socket = socket_transport(transport)
        transport.registerProducer(self, True)

    def buffered(self) -> int:
        """Bytes written but not yet handed to the kernel."""
        return unsent_bytes(self._socket)

    def check(self, adding: int) -> bool:
        """True if ``adding`` more bytes keep the client under the bound."""
        pending = self.buffered() + adding
        if pending > self.limit:
            self._on_exceeded(pending)
            return False
        return True

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False

    def stopProducing(self) -> None:
        self.paused = False


def cut_off(
    conn: IConnection,
    pending: int,
    limit: int,
    disconnect: Callable[[str], None],
    clock: IReactorTime,
    abort: Callable[[], None],
) -> None:
    """A client stopped reading: close it, stop routing to it, abort it soon.

    The same steps for every transport; only closing and aborting differ.
    """
    reason = f"slow consumer: {pending} bytes unsent (limit {limit})"
    log.warn("cutting off {peer}: {reason}", peer=conn.peer, reason=reason, pending=pending)
    conn.close(CLOSE_POLICY, reason)
    disconnect(SLOW_CONSUMER)
    clock.callLater(ABORT_GRACE, abort)
