"""What each connection costs the gateway: state an open WebSocket does not
carry, and the listen backlog a reconnect storm needs."""

from __future__ import annotations

from pathlib import Path

from autobahn.websocket.protocol import WebSocketServerProtocol
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.python.failure import Failure

from harness.wire import Client, Rig
from wingman_gateway.limits import Limits
from wingman_gateway.listener import LISTEN_BACKLOG, Listener, with_backlog
from wingman_gateway.router import Router
from wingman_gateway.web.site import HEADER_TIMEOUT
from wingman_gateway.transports.websocket import GatewayWebSocketFactory


def _registered(rig: Rig, name: str) -> Client:
    client = rig.client("websocket")
    reply = client.request("register", {"name": name})
    assert reply["type"] == "ack", reply
    reply = client.request("join_group", {"groupName": "r", "createIfNotExists": True})
    assert reply["type"] == "ack", reply
    return client


def test_an_open_websocket_sheds_options_handshake_and_idle_state(tmp_path: Path) -> None:
    rig = Rig(tmp_path, limits=Limits(message_rate=0))
    a, b = _registered(rig, "a"), _registered(rig, "b")
    node = next(n for n in rig.router.rooms.nodes() if n.name == "a")
    conn = node.conn
    own = set(vars(conn))
    # Autobahn's options are read from the class, not copied per connection.
    assert not own & set(WebSocketServerProtocol.CONFIG_ATTRS), own & set(WebSocketServerProtocol.CONFIG_ATTRS)
    assert conn.maxFramePayloadSize == 0 and conn.utf8validateIncoming is False
    # The handshake's leftovers, the unused send queue and UTF-8 validator,
    # and flags still at their initial value are gone, reading as before.
    for name in ("http_headers", "http_request_data", "_wskey", "send_queue", "utf8validator",
                 "wasClean", "closedByMe", "remoteCloseCode"):
        assert name not in own, name
    assert conn.http_headers is None and conn.send_queue == () and conn.wasClean is False
    assert conn.current_frame_masker is None  # the last frame's unmasker is not kept
    # No WebSocket-level ping timer per connection: the Router's heartbeat does that work.
    assert conn.autoPingInterval == 0 and conn.autoPingPendingCall is None
    # Still a full connection: it delivers, and closes with the code it is given.
    b.take()
    a.send({"type": "broadcast", "payload": {"groupName": "r", "message": "hi"}})
    got = [e for e in b.take() if e["type"] == "broadcast"]
    assert [e["payload"] for e in got] == ["hi"]
    assert a.request("unregister")["type"] == "ack"
    rig.pump()
    assert a.closed and a.close_code == 1000  # type: ignore[attr-defined]
    assert conn.closedByMe is True and "closedByMe" in vars(conn)
    assert rig.router.rooms.node_count() == 1


def test_a_new_http_connection_has_one_timer_the_head_deadline(tmp_path: Path) -> None:
    """twisted.web's idle timer stays off; the channel's head deadline is the one timer."""
    from twisted.internet import reactor

    rig = Rig(tmp_path)
    before_clock, before_reactor = len(rig.clock.getDelayedCalls()), len(reactor.getDelayedCalls())
    channel = rig.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    channel.makeConnection(StringTransport())
    assert channel.timeOut is None
    assert len(reactor.getDelayedCalls()) == before_reactor
    [deadline] = rig.clock.getDelayedCalls()[before_clock:]
    assert deadline.getTime() == rig.clock.seconds() + HEADER_TIMEOUT
    channel.connectionLost(Failure(ConnectionDone()))
    assert len(rig.clock.getDelayedCalls()) == before_clock


def test_options_set_later_reach_new_connections_and_callbacks_stay_functions() -> None:
    clock = Clock()
    factory = GatewayWebSocketFactory(Router(clock), clock)
    factory.setProtocolOptions(openHandshakeTimeout=3)
    assert factory.protocol.openHandshakeTimeout == 3
    accept = factory.perMessageCompressionAccept
    # A function option must not become a method of the connection class.
    assert factory.protocol.perMessageCompressionAccept is accept
    assert factory.protocol.__dict__["CONFIG_ATTRS"] == ()


def test_socket_listeners_get_a_deep_backlog_unless_one_is_given() -> None:
    assert with_backlog("tcp:8080") == f"tcp:8080:backlog={LISTEN_BACKLOG}"
    assert with_backlog("tcp:0:interface=127.0.0.1") == f"tcp:0:interface=127.0.0.1:backlog={LISTEN_BACKLOG}"
    assert with_backlog("TCP6:80") == f"TCP6:80:backlog={LISTEN_BACKLOG}"
    assert with_backlog("unix:/run/w.sock") == f"unix:/run/w.sock:backlog={LISTEN_BACKLOG}"
    assert with_backlog("tcp:8080:backlog=7") == "tcp:8080:backlog=7"
    assert with_backlog("systemd:domain=INET:index=0") == "systemd:domain=INET:index=0"
    for description, backlog in (("tcp:0:interface=127.0.0.1", LISTEN_BACKLOG),
                                 ("tcp:0:interface=127.0.0.1:backlog=7", 7)):
        reactor = MemoryReactor()
        listener = Listener(description, Factory(), reactor)
        listener.startService()
        assert reactor.tcpServers[0][2] == backlog
        assert listener.description == description  # logs and the ports file show what was asked
