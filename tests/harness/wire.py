"""One gateway in memory, reached over every transport's real code.

``Rig`` is a Router on a Clock with what the wiring puts around it: the
Site a listener serves (``/ws`` and ``/bridge``) and the SSH server's
factory. Clients speak through ``twisted.test.iosim`` pumps, so the bytes
go through the same protocol objects as on a socket, without one:

- ``memory``: an ``IConnection`` handed straight to the Router;
- ``websocket``: the independent ``websockets`` sans-I/O client against
  the Site's ``/ws`` (Autobahn);
- ``http``: the HTTP bridge,/1.1 requests (``h11``) to ``/bridge/send`` and
  ``/bridge/poll`` on the Site;
- ``ssh``: a Conch client running the ``wingman`` subsystem.

Every client has ``send(envelope)`` and ``take()`` (what arrived since the
last take, the heartbeat's pings left out), so one protocol suite runs
over all of them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import h11
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Protocol
from twisted.test import iosim
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.uri import parse_uri

from harness.memory import Harness, MemoryConnection
from harness.sshkit import MemorySSH, UserKey, write_authorized_keys
from wingman_gateway.transports.bridge.options import BridgeOptions
from wingman_gateway.transports.bridge.resources import bridge_resource
from wingman_gateway.transports.bridge.session import Bridge
from wingman_gateway.transports.websocket import GatewayWebSocketFactory, websocket_resource
from wingman_gateway.web.health import HealthSources
from wingman_gateway.web.site import build_site

TRANSPORTS = ("memory", "websocket", "http", "ssh")
_PEER = IPv4Address("TCP", "127.0.0.1", 40000)
_HOST = IPv4Address("TCP", "127.0.0.1", 3000)


def _decode(data: bytes | str) -> dict[str, Any]:
    return json.loads(data)  # type: ignore[no-any-return]


def _without_pings(envelopes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in envelopes if e.get("type") != "ping"]


def _encode(envelope: dict[str, Any] | str | bytes) -> bytes:
    if isinstance(envelope, bytes):
        return envelope
    if isinstance(envelope, str):
        return envelope.encode("utf-8")
    return json.dumps(envelope).encode("utf-8")


class Rig(MemorySSH):
    """The Router of ``Harness``, its Site (``/ws``, ``/bridge``) and its SSH factory."""

    def __init__(self, directory: Path, **kwargs: Any) -> None:
        self.user_key = UserKey(directory, "alice")
        keys = write_authorized_keys(directory / "authorized_keys", self.user_key.line())
        super().__init__(keys, **kwargs)
        router = self.router
        self.bridge = Bridge(router, BridgeOptions(), self.clock)
        health = HealthSources(router.gateway_name, False, router.summary, router.now_ms)
        children = {
            b"ws": websocket_resource(GatewayWebSocketFactory(router, self.clock)),
            b"bridge": bridge_resource(self.bridge),
        }
        self.site = build_site(router, health, children, self.bridge.cors)
        self._connected = 0

    def pump(self) -> None:
        """Move every pending byte, both ways, and run what is due now."""
        for _ in range(3):
            for pump in self.pumps:
                pump.flush()
            self.clock.advance(0)

    def client(self, transport: str) -> "Client":
        """A connected, unregistered client over ``transport``."""
        self._connected += 1
        maker: dict[str, Callable[[], Client]] = {
            "memory": lambda: MemoryClient(self),
            "websocket": lambda: WebSocketClient(self),
            "http": lambda: BridgeClient(self),
            "ssh": lambda: SSHClient(self),
        }
        return maker[transport]()

    def _http_pump(self, client: Protocol) -> iosim.IOPump:
        server = self.site.buildProtocol(_PEER)
        server_io = iosim.FakeTransport(server, isServer=True, hostAddress=_HOST, peerAddress=_PEER)
        client_io = iosim.FakeTransport(client, isServer=False, hostAddress=_PEER, peerAddress=_HOST)
        pump = iosim.connect(server, server_io, client, client_io, greet=False, clock=self.clock)
        self.pumps.append(pump)
        return pump


class Client:
    """A client of the rig over one transport."""

    transport = ""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig

    def send(self, envelope: dict[str, Any] | str | bytes) -> None:
        raise NotImplementedError

    def take(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    @property
    def closed(self) -> bool:
        raise NotImplementedError

    def drop(self) -> None:
        """The connection is cut under the client (its TCP connection aborted)."""
        raise NotImplementedError

    def request(self, kind: str, payload: Any = None, **extra: Any) -> dict[str, Any]:
        """Send one request; the one reply it got (other arrivals are kept for ``take``)."""
        envelope: dict[str, Any] = {"type": kind, **extra}
        if payload is not None:
            envelope["payload"] = payload
        self.send(envelope)
        replies = [e for e in self.take() if e.get("type") in ("ack", "error", "pong")]
        assert len(replies) == 1, replies
        return replies[0]


class MemoryClient(Client):
    transport = "memory"

    def __init__(self, rig: Rig) -> None:
        super().__init__(rig)
        self.conn = MemoryConnection(f"memory:{rig._connected}")
        self.node = rig.router.connect(self.conn)

    def send(self, envelope: dict[str, Any] | str | bytes) -> None:
        self.rig.router.receive(self.node, _encode(envelope))
        self.rig.pump()

    def take(self) -> list[dict[str, Any]]:
        self.rig.pump()
        return _without_pings(self.conn.take())

    @property
    def closed(self) -> bool:
        return self.conn.closed is not None

    def drop(self) -> None:
        self.rig.router.disconnect(self.node, "connection lost")


class _Bytes(Protocol):
    """The client end of a pump: what arrives goes to ``on_data``."""

    def __init__(self, on_data: Callable[[bytes], None]) -> None:
        self.on_data = on_data
        self.lost = False

    def dataReceived(self, data: bytes) -> None:
        self.on_data(data)

    def connectionLost(self, reason: Any = None) -> None:
        self.lost = True


class WebSocketClient(Client):
    transport = "websocket"

    def __init__(self, rig: Rig) -> None:
        super().__init__(rig)
        self.ws = ClientProtocol(parse_uri("ws://127.0.0.1:3000/ws"))
        self.socket = _Bytes(self._received)
        self.inbox: list[dict[str, Any]] = []
        self.close_code: int | None = None
        rig._http_pump(self.socket)
        self._write(self.ws.send_request(self.ws.connect()))
        rig.pump()
        assert self.ws.handshake_exc is None, self.ws.handshake_exc

    def _write(self, _: Any = None) -> None:
        for data in self.ws.data_to_send():
            if data:
                self.socket.transport.write(data)  # type: ignore[union-attr]

    def _received(self, data: bytes) -> None:
        self.ws.receive_data(data)
        for event in self.ws.events_received():
            if isinstance(event, Frame):
                if event.opcode in (Opcode.TEXT, Opcode.BINARY):
                    self.inbox.append(_decode(event.data))
                elif event.opcode == Opcode.CLOSE and self.close_code is None:
                    self.close_code = int.from_bytes(event.data[:2], "big") if event.data else 1005
        self._write()  # pongs and the close handshake's answer

    def send(self, envelope: dict[str, Any] | str | bytes) -> None:
        self.ws.send_text(_encode(envelope))
        self._write()
        self.rig.pump()

    def take(self) -> list[dict[str, Any]]:
        self.rig.pump()
        got, self.inbox = self.inbox, []
        return _without_pings(got)

    @property
    def closed(self) -> bool:
        return self.close_code is not None

    def drop(self) -> None:
        self.socket.transport.abortConnection()  # type: ignore[union-attr]
        self.rig.pump()


class BridgeClient(Client):
    """Requests go to ``/bridge/send``; what is pushed is read with ``/bridge/poll``."""

    transport = "http"

    def __init__(self, rig: Rig) -> None:
        super().__init__(rig)
        self.secret: str | None = None
        self.after = 0
        self.inbox: list[dict[str, Any]] = []
        self.ended = False

    def _exchange(self, method: str, target: str, body: bytes = b"") -> tuple[int, bytes]:
        """One HTTP/1.1 request on a connection of its own; status and body."""
        parser = h11.Connection(h11.CLIENT)
        events: list[Any] = []

        def arrived(data: bytes) -> None:
            parser.receive_data(data)
            while True:
                event = parser.next_event()
                if event in (h11.NEED_DATA, h11.PAUSED):
                    return
                events.append(event)

        socket = _Bytes(arrived)
        pump = self.rig._http_pump(socket)
        headers = [("Host", "127.0.0.1:3000"), ("Content-Length", str(len(body)))]
        if self.secret is not None:
            headers.append(("X-Wingman-Session", self.secret))
        data = parser.send(h11.Request(method=method, target=target, headers=headers))
        data += parser.send(h11.Data(data=body)) + parser.send(h11.EndOfMessage())
        socket.transport.write(data)  # type: ignore[union-attr]
        self.rig.pump()
        self.rig.pumps.remove(pump)
        status = next(e.status_code for e in events if isinstance(e, h11.Response))
        content = b"".join(e.data for e in events if isinstance(e, h11.Data))
        assert any(isinstance(e, h11.EndOfMessage) for e in events), events
        return status, content

    def send(self, envelope: dict[str, Any] | str | bytes) -> None:
        if self.ended:
            return
        status, body = self._exchange("POST", "/bridge/send", _encode(envelope))
        if status == 204:
            return
        reply = _decode(body)
        secret = reply.pop("session", None)
        if secret is not None:
            self.secret = secret
        self.inbox.append(reply)
        if reply.get("type") == "ack" and reply.get("payload", {}).get("action") == "unregister":
            self.ended = True

    def take(self) -> list[dict[str, Any]]:
        self.rig.pump()
        if self.secret is not None and not self.ended:
            status, body = self._exchange("GET", f"/bridge/poll?after={self.after}&timeout=0")
            if status == 200:
                answer = _decode(body)
                for item in answer.get("messages", []):
                    self.after = max(self.after, int(item["seq"]))
                    self.inbox.append(item["envelope"])
                if answer.get("closed"):
                    self.ended = True
            else:
                self.ended = True
        got, self.inbox = self.inbox, []
        return _without_pings(got)

    @property
    def closed(self) -> bool:
        self.take()
        return self.ended

    def drop(self) -> None:
        """The client stops reading; its session ends at the session timeout."""
        self.ended = True
        self.rig.clock.advance(self.rig.bridge.options.session_timeout + 1)
        self.rig.pump()


class SSHClient(Client):
    """The ``wingman`` subsystem of the gateway's SSH server, one JSON line each way."""

    transport = "ssh"

    def __init__(self, rig: Rig) -> None:
        super().__init__(rig)
        client, _, pump = rig.login("alice", rig.user_key)
        self.client = client
        self.channel, outcome = rig.subsystem(client, pump)
        assert outcome and not hasattr(outcome[0], "value"), outcome
        self.pump = pump

    def send(self, envelope: dict[str, Any] | str | bytes) -> None:
        self.channel.send(_encode(envelope))
        self.rig.pump()

    def take(self) -> list[dict[str, Any]]:
        self.rig.pump()
        return [e for e in self.channel.take() if e.get("type") != "close"]

    @property
    def closed(self) -> bool:
        self.rig.pump()
        return bool(self.channel.is_closed or self.channel.got_eof or b'"type":"close"' in self.channel.out)

    def drop(self) -> None:
        self.client.transport.abortConnection()  # type: ignore[union-attr]
        self.rig.pump()
