"""The WebSocket transport: Autobahn connections adapted to ``IConnection``."""

from __future__ import annotations

import inspect
from functools import cached_property
from typing import Any, Callable

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.util import peer2str
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.util import encode_truncate
from autobahn.websocket.protocol import TrafficStats
from twisted.internet.interfaces import IReactorTime
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.web.server import NOT_DONE_YET
from wingman_gateway.logs import get_logger
from zope.interface import implementer

from wingman_gateway.connection import (
    ABORT_GRACE,
    CLOSE_POLICY,
    Coalescer,
    IConnection,
    Outbound,
    OutboundGuard,
    cut_off,
)
from wingman_gateway.envelope import encode
from wingman_gateway.gate import GatedConnection
from wingman_gateway import errors
from wingman_gateway.router import Router
from wingman_gateway.sockets import direct_writer
from wingman_gateway.transports.upgrade import offers_declined, plain_key, resume, switching, switching_head, take_over
from wingman_gateway.web.head import Head, IEarlyUpgrade, request_head
from wingman_gateway.web.origin import PageHosts, origin_refusal
from wingman_gateway.state import Node

log = get_logger("wingman_gateway.websocket")

# Key under which a broadcast's WebSocket framing is cached on its Outbound.
_FRAME = "websocket"
# Opening-handshake state Autobahn keeps but never reads once the connection
# is open.
_HANDSHAKE_LEFTOVERS = (
    "http_request_data", "http_response_data", "http_status_line", "http_headers",
    "http_request_params", "http_request_uri", "http_request_host", "_wskey",
)
# Autobahn's per-connection state that, once a connection is open, keeps
# the value it was given until something rare happens (a close, a failure),
# and the handshake's leftovers (as None). ``GatewayWebSocket`` has them as
# class attributes, and an open connection sheds its own copies: reads find
# the same value on the class, and Autobahn's assignments still make them
# the connection's own. The state Autobahn rewrites for every message
# (current frame, message data...) is not here; it would only come back.
_AT_REST: dict[str, Any] = {
    **dict.fromkeys(_HANDSHAKE_LEFTOVERS, None),
    **dict.fromkeys(
        (
            "wasNotCleanReason", "localCloseCode", "localCloseReason", "remoteCloseCode",
            "remoteCloseReason", "websocket_protocol_in_use", "openHandshakeTimeoutCall", "closeHandshakeTimeoutCall",
            "autoPingTimeoutCall", "autoPingPending", "autoPingPendingCall", "autoPingPendingSent",
            "_perMessageCompress", "trackedTimings",
            # utf8validateIncoming is off: the Router checks text itself
            "utf8validator",
        ),
        None,
    ),
    **dict.fromkeys(
        (
            "closedByMe", "failedByMe", "droppedByMe", "wasClean", "wasServerConnectionDropTimeout",
            "wasOpenHandshakeTimeout", "wasCloseHandshakeTimeout", "wasServingFlashSocketPolicyFile",
            "wasMaxFramePayloadSizeExceeded", "wasMaxMessagePayloadSizeExceeded", "triggered",
        ),
        False,
    ),
    "autoPingPendingSeq": 0,
    "data": b"",
    # Autobahn queues outgoing data only for sends with ``sync`` or
    # ``chopsize``, which the gateway never makes; its checks only take the
    # queue's len(). An empty tuple answers them (and would fail loudly on a
    # queued send) where a deque costs 760 bytes per connection.
    "send_queue": (),
}
# WebSocket PING frames a client may send: a burst, then so many per second.
# Parsing a flood of them costs the event loop; past the budget the
# connection is closed (1008).
PING_BURST = 32
PING_RATE = 4.0


@implementer(IConnection)
class GatewayWebSocket(WebSocketServerProtocol):
    """One WebSocket client."""

    transport_name = "websocket"
    # Twisted types a protocol's transport as optional; a connection's code
    # runs only while it has one (TCP or TLS, with producer methods).
    transport: Any
    factory: "GatewayWebSocketFactory"
    session: Node | None = None
    _guard: OutboundGuard | None = None
    _open = False
    _pending: list[bytes] | None = None
    _write: Callable[[bytes], None]  # the transport's write, or straight to its socket (``sockets.direct_writer``)
    _oversize = 0
    locals().update(_AT_REST)
    _ping: bytes | None = None  # the latest PING's payload, answered at the end of the turn
    _ping_budget = float(PING_BURST)
    _ping_at = 0.0

    # -- connection lifecycle ------------------------------------------

    def connectionMade(self) -> None:
        """A connection for Autobahn's own opening handshake (see ``upgrade``)."""
        self._adopt()
        super().connectionMade()  # sets TCP_NODELAY (Autobahn's tcpNoDelay option, on)

    def open_upgraded(self, transport: Any, answer: bytes) -> None:
        """Start on a connection whose upgrade ``upgrade.plain_key`` found plain:
        write ``answer`` (the 101) and be open at once.

        What Autobahn's opening handshake would leave behind for such an
        upgrade, without its parse, its timer or its transport details
        (read by nothing here); its framing then runs unchanged.
        """
        self.connected = 1
        self.transport = transport
        self._adopt()  # TCP_NODELAY is on: twisted.web's channel set it when the connection opened
        self.factory.countConnections += 1  # as Autobahn counts; it subtracts when the connection is lost
        self.trafficStats = TrafficStats()
        self.websocket_version = 13
        self.state = self.STATE_OPEN
        self.send_state = self.SEND_STATE_GROUND
        self.inside_message = False
        self.current_frame = None  # type: ignore[assignment]  # Autobahn's own value between frames
        # Written with the turn's other writes (``Coalescer``), like every frame after it.
        self._pending = [answer]
        self.factory.coalescer.add(self)
        self._onOpen()
        self.is_open.callback(None)

    @cached_property
    def peer(self) -> str:  # type: ignore[override]  # Autobahn's attribute, made when first read
        """The client's address as Autobahn names it (``tcp4:1.2.3.4:5678``).

        Only log lines read it; made on first use (Autobahn's handshake sets
        it, a plain upgrade leaves it to this), it costs an idle connection
        neither the time nor the string.
        """
        return str(peer2str(self.transport))

    def dataReceived(self, data: bytes) -> None:
        """Autobahn's framing of ``data``, without the debug line Autobahn
        formats for every read whether or not debug is logged (its caller
        names and values: about 2% of the gateway's time while nodes connect)."""
        self._dataReceived(data)

    def _adopt(self) -> None:
        """Take the transport as twisted.web hands it over, and the way to write to it."""
        # Autobahn looks for TLS on its transport itself: under TLS, talk to
        # the TLS layer directly (the listener's door stays in the chain).
        below = getattr(self.transport, "transport", None)
        if isinstance(self.transport, GatedConnection) and isinstance(below, TLSMemoryBIOProtocol):
            self.transport = below
        # Handed over from twisted.web, the transport still names the HTTP
        # channel as its producer; the outbound guard takes its place.
        self.transport.unregisterProducer()
        self._write = direct_writer(self.transport)

    def onOpen(self) -> None:
        factory = self.factory
        self._guard = OutboundGuard(
            self.transport, factory.router.limits.max_buffer, self._cut_off
        )
        self._open = True
        self.utf8validator = None  # type: ignore[assignment]  # unused once open (we validate)
        self._shed()
        self.session = factory.router.connect(self)

    def _shed(self) -> None:
        """Drop the copies of ``_AT_REST`` values, and the room they took.

        A dict never shrinks when keys leave it; a copy of it is sized for
        what is left. Measured with ``benchmarks/loadgen.py memory``: with
        the options on the class and no ping timer, an idle node went from
        7.7 to 5.0 KB; this shedding is 0.75 KB of that (a 1,584-byte dict
        becomes 832 bytes) and the send queue 0.76 KB.
        """
        state = self.__dict__
        for name in _HANDSHAKE_LEFTOVERS:
            state.pop(name, None)
        if not state.get("send_queue", True):
            del state["send_queue"]
        for name in state.keys() & _AT_REST.keys():  # the few set, not all 38 looked up
            if state[name] is _AT_REST[name]:
                del state[name]
        self.__dict__ = dict(state)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self._open = False
        if self.session is not None:
            detail = reason or ("closed" if wasClean else "connection lost")
            self.factory.router.disconnect(self.session, detail)

    # -- IConnection ---------------------------------------------------

    def send(self, message: Outbound) -> None:
        if not self._open:
            return
        frame = message.frames.get(_FRAME)
        if frame is None:
            frame = message.frames[_FRAME] = self.factory.prepareMessage(message.data).payloadHybi
        pending = self._pending
        if pending:
            pending.append(frame)
        else:
            self._pending = [frame]
            self.factory.coalescer.add(self)

    def flush(self) -> None:
        """Write what this turn queued (called by the Coalescer, and before closing)."""
        pending, self._pending = self._pending, None
        if not pending or not self._open:
            return
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        guard = self._guard
        if guard is not None and guard.paused and not guard.check(len(data)):
            return
        self._write(data)

    def onPing(self, payload: bytes) -> None:
        """One PONG per turn, for the latest PING (RFC 6455 5.5.3 allows it):
        a client flooding PINGs gets no more PONGs than reads."""
        if not self._ping_allowed():
            return
        first = self._ping is None
        self._ping = payload
        if first:
            self.factory.clock.callLater(0, self._pong)

    def _ping_allowed(self) -> bool:
        """Spend one PING from the budget; close the connection when it is spent."""
        now = self.factory.clock.seconds()
        if not self._ping_at:
            self._ping_at = now
        budget = min(PING_BURST, self._ping_budget + (now - self._ping_at) * PING_RATE)
        self._ping_at = now
        if budget >= 1:
            self._ping_budget = budget - 1
            return True
        if self._open:
            reason = f"too many PING frames (at most {PING_BURST} at once, then {PING_RATE:g} per second)"
            log.warn("closing {peer}: {reason}", peer=self.peer, reason=reason)
            router, session = self.factory.router, self.session
            self.close(CLOSE_POLICY, reason)
            if session is not None:
                router.disconnect(session, "too many PING frames")
            self.transport.pauseProducing()  # nothing more it sends is read
            self.factory.clock.callLater(ABORT_GRACE, self.transport.abortConnection)
        return False

    def _pong(self) -> None:
        payload, self._ping = self._ping, None
        if self.state == self.STATE_OPEN and self._open:
            self.sendPong(payload)

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        """Every write Autobahn makes (pongs to the client's pings, close
        frames, its own pings) counts against the outbound bound too."""
        guard = self._guard
        if guard is not None and guard.paused and not guard.check(len(data)):
            return
        super().sendData(data, sync, chopsize)

    def close(self, status: int, reason: str) -> None:
        if not self._open:
            return
        self.flush()  # what was sent before the close goes out before it
        self._open = False
        # sendClose() admits only 1000 and 3000-4999; a server may also send
        # the protocol's own codes (1001 going away, 1008 policy, 1009, 1013).
        self.sendCloseFrame(code=status, reasonUtf8=encode_truncate(reason, 123))

    # -- incoming messages ---------------------------------------------
    # Messages are assembled here rather than by Autobahn so that one over
    # the size limit is discarded as it arrives, never buffered whole, and
    # answered with an error while the connection stays usable.

    def onMessageBegin(self, isBinary: bool) -> None:
        super().onMessageBegin(isBinary)
        self._oversize = 0

    def onMessageFrameBegin(self, length: int) -> None:
        total = self.message_data_total_length + length
        if self._oversize or total > self.factory.router.payload_limit(self.session):
            self._oversize = total
            self.message_data_total_length = total
            self.frame_data = []
            return
        super().onMessageFrameBegin(length)

    def onMessageFrameData(self, payload: bytes) -> None:
        if not self._oversize:
            super().onMessageFrameData(payload)

    def onMessageFrameEnd(self) -> None:
        if self._oversize:
            self.frame_data = None  # type: ignore[assignment]  # Autobahn's own reset value
            return
        super().onMessageFrameEnd()

    def onMessageEnd(self) -> None:
        # The last frame's unmasker is not needed again (each frame has its own).
        self.current_frame_masker = None
        data, self.message_data = self.message_data, None  # type: ignore[assignment]  # Autobahn's reset
        session = self.session
        if session is None or self.failedByMe:
            return
        router = self.factory.router
        if self._oversize:
            router.refuse(session, router.too_large(self._oversize, session))
            return
        router.receive(session, b"".join(data))

    # -- slow consumers ------------------------------------------------

    def _cut_off(self, pending: int) -> None:
        """The client stopped reading: stop routing to it and let it go."""
        if not self._open:
            return
        router, session = self.factory.router, self.session
        cut_off(
            self, pending, router.limits.max_buffer,
            lambda reason: router.disconnect(session, reason) if session is not None else None,
            self.factory.clock, self.transport.abortConnection,
        )
        # Nothing it sends is answered any more (its pings would only make pongs).
        self.transport.pauseProducing()


def _with_options(factory: WebSocketServerFactory) -> type[GatewayWebSocket]:
    """``GatewayWebSocket`` with ``factory``'s Autobahn options as class attributes.

    Autobahn copies each of its ~30 options from the factory onto every new
    connection unless the class already has it, and pretty-prints the list
    for a debug line whether or not debug is logged: 18% of the gateway's
    time while nodes connect (py-spy, see benchmarks/README.rst). Read from
    the class instead, the options cost nothing per connection, neither time
    nor an entry each in every connection's ``__dict__``.
    """
    options = {name: getattr(factory, name) for name in GatewayWebSocket.CONFIG_ATTRS}
    for name, value in options.items():
        if inspect.isfunction(value):  # a callback such as perMessageCompressionAccept
            options[name] = staticmethod(value)  # must not become a method
    return type(GatewayWebSocket.__name__, (GatewayWebSocket,), {**options, "CONFIG_ATTRS": ()})


class GatewayWebSocketFactory(WebSocketServerFactory):
    """Builds ``GatewayWebSocket`` connections bound to one Router."""

    protocol = GatewayWebSocket  # type: ignore[assignment]  # Autobahn builds from the class

    def __init__(self, router: Router, clock: IReactorTime, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.router = router
        self.clock = clock
        self.coalescer = Coalescer(clock)
        self.setProtocolOptions(
            # Size is enforced per message by GatewayWebSocket, which discards
            # instead of failing the connection.
            maxFramePayloadSize=0,
            maxMessagePayloadSize=0,
            # Text is decoded and checked by the Router, which answers
            # INVALID_MESSAGE instead of failing the connection.
            utf8validateIncoming=False,
            # No WebSocket-level pings: the Router's heartbeat (one timer for
            # the whole gateway) already drops a connection, dead TCP peers
            # included, that sends nothing for --ping-timeout; Autobahn's
            # would add a timer and its closures to every connection.
            autoPingInterval=0,
            openHandshakeTimeout=10,
            closeHandshakeTimeout=ABORT_GRACE,
        )

    def setProtocolOptions(self, **options: Any) -> None:  # type: ignore[override]  # keywords only, as called
        super().setProtocolOptions(**options)
        self.protocol = _with_options(self)


@implementer(IEarlyUpgrade)
class GatewayWebSocketResource(WebSocketResource):
    """``/ws``: the upgrade is refused (403) for pages the origin policy does not allow.

    A plain upgrade (``upgrade.plain_key``: no ``Origin``, so no page and
    no origin policy to ask) is answered from its head alone: taken from a
    connection's first read (``take``), or from the request twisted.web
    read (``render``).
    """

    def __init__(
        self, factory: GatewayWebSocketFactory, allows: Callable[[str], bool], hosts: PageHosts
    ) -> None:
        super().__init__(factory)
        self._allows = allows
        self._hosts = hosts
        # The 101 up to its accept value: the factory's options are set before it serves.
        self._switching = switching_head(factory.server, factory.headers)

    def render(self, request: Any) -> Any:
        refusal = origin_refusal(self._allows, request, self._hosts)
        if refusal is None:
            head = request_head(request)
            key = plain_key(head) if request.channel.transport is not None else None
            if key is not None and self._open(request.channel, head, key):
                return NOT_DONE_YET
            return super().render(request)  # Autobahn's own handshake (see ``upgrade``)
        router = self._factory.router
        request.setResponseCode(403)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return encode({"type": "error", "payload": {"code": errors.FORBIDDEN, "message": refusal},
                       "timestamp": router.now_ms()})

    def take(self, channel: Any, head: Head) -> bool:
        """``IEarlyUpgrade``: open a plain upgrade from the connection's first read."""
        key = plain_key(head)
        return key is not None and self._open(channel, head, key)

    def _open(self, channel: Any, head: Head, key: bytes) -> bool:
        """Answer a plain upgrade (``upgrade.plain_key``) and open its connection;
        False when its extension offers need Autobahn's handshake."""
        factory = self._factory
        connection = factory.buildProtocol(channel.transport.getPeer())
        if not offers_declined(connection, head):
            return False
        transport = take_over(channel, connection)
        connection.open_upgraded(transport, switching(key, self._switching))
        # Reading may have been paused under the channel (twisted.web does
        # while it serves a request; TLS or TCP may when their buffers
        # fill), and the channel no longer takes part: read again.
        resume(transport)
        return True


def websocket_resource(
    factory: GatewayWebSocketFactory, allows: Callable[[str], bool] = lambda origin: False,
    hosts: PageHosts = PageHosts(),
) -> WebSocketResource:
    """``/ws``; ``allows`` says which page origins besides the gateway's own may use it,
    ``hosts`` under which names the gateway's own pages are trusted."""
    return GatewayWebSocketResource(factory, allows, hosts)
