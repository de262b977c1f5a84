"""Property: whatever a client sends to a listener's Site (random methods,
paths, query strings, header names and bytes, bodies), the gateway answers
with a well-formed HTTP status that is never 500, and logs no failure. The
real Site (bridge, /ws, /health, /stats, the door and the channel) runs in
memory on a ``Clock``, with a ``StringTransport`` as its socket."""

from __future__ import annotations

import json
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher

from wingman_gateway.admission import Admission, AdmissionLimits
from wingman_gateway.gate import GatedFactory
from wingman_gateway.limits import Limits
from wingman_gateway.rooms import LocalRooms
from wingman_gateway.router import Router
from wingman_gateway.transports.bridge.options import BridgeOptions
from wingman_gateway.transports.bridge.resources import bridge_resource
from wingman_gateway.transports.bridge.session import Bridge
from wingman_gateway.transports.websocket import GatewayWebSocketFactory, websocket_resource
from wingman_gateway.web.health import HealthSources
from wingman_gateway.web.site import build_site

PEER = IPv4Address("TCP", "127.0.0.1", 40000)


class SocketTransport(StringTransport):
    """A ``StringTransport`` that, like a real socket's, lets a producer be unregistered twice."""

    def unregisterProducer(self) -> None:
        self.producer = None
        self.streaming = None


class MemoryGateway:
    """The Site of one listener, in memory, with one registered bridge session."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.admission = Admission(AdmissionLimits(max_connections=1000))
        self.router = Router(self.clock, Limits(max_payload=4096), None, "fuzz", LocalRooms(self.clock),
                             admission=self.admission)
        self.bridge = Bridge(self.router, BridgeOptions(cors_origins=("http://app.example",)), self.clock)
        children = {
            b"ws": websocket_resource(GatewayWebSocketFactory(self.router, self.clock), self.bridge.cors.allows),
            b"bridge": bridge_resource(self.bridge),
        }
        health = HealthSources("fuzz", False, self.router.summary, self.router.now_ms)
        self.factory = GatedFactory(build_site(self.router, health, children, self.bridge.cors), self.admission)
        self.factory.doStart()
        register = b'{"type":"register","payload":{"name":"fuzz"}}'
        status, body = self.exchange(b"POST /bridge/send HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s"
                                     % (len(register), register))
        assert status == 200, body
        self.secret = json.loads(body.split(b"\r\n\r\n", 1)[1])["session"]

    def exchange(self, data: bytes) -> tuple[int | None, bytes]:
        """Send ``data`` on a fresh connection; the first status and everything written."""
        protocol = self.factory.buildProtocol(PEER)
        assert protocol is not None
        transport = SocketTransport(peerAddress=PEER)
        protocol.makeConnection(transport)
        protocol.dataReceived(data)
        self.clock.advance(0)
        written = transport.value()
        protocol.connectionLost(Failure(ConnectionDone("fuzz request done")))
        self.clock.advance(3)  # any grace timers of the connection run out
        status = None
        if written.startswith(b"HTTP/1.1 "):
            status = int(written[9:12])
        return status, written


@pytest.fixture(scope="module")
def memory() -> MemoryGateway:
    return MemoryGateway()


@pytest.fixture
def failures() -> Iterator[list[dict[str, Any]]]:
    """Log events that report a failure (a traceback) or an error while the test runs."""
    seen: list[dict[str, Any]] = []

    def observe(event: dict[str, Any]) -> None:
        level = getattr(event.get("log_level"), "name", "")
        if "log_failure" in event or level in ("error", "critical"):
            seen.append(event)

    globalLogPublisher.addObserver(observe)
    yield seen
    globalLogPublisher.removeObserver(observe)


TOKEN = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=10)
METHODS = st.one_of(st.sampled_from(["GET", "POST", "OPTIONS", "HEAD", "PUT", "DELETE", "PATCH"]), TOKEN)
PATHS = st.sampled_from(["/bridge/send", "/bridge/poll", "/bridge/sse", "/bridge/ack", "/bridge/", "/bridge",
                         "/health", "/stats", "/ws", "/", "/nothing", "/bridge/poll/extra", "*"])
QUERY_PARTS = st.lists(
    st.tuples(st.sampled_from(["after", "timeout", "session", "%73ession", "x", "Session"]),
              st.one_of(st.sampled_from(["0", "1", "-1", "inf", "nan", "1e400", "%C2%B2", "%FF", "99999999999999999999",
                                        "SECRET"]), st.text(alphabet="0123456789abc%", max_size=8))),
    max_size=3,
)
HEADER_NAMES = st.sampled_from(["Origin", "Last-Event-ID", "X-Wingman-Session", "Authorization", "Content-Type",
                                "Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version", "Expect",
                                "Referer", "User-Agent", "Transfer-Encoding", "Host"])
HEADER_VALUES = st.one_of(
    st.binary(max_size=30).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
    st.sampled_from([b"SECRET", b"Bearer SECRET", b"http://app.example", b"http://evil.example", b"websocket",
                     b"Upgrade", b"13", b"dGhlIHNhbXBsZSBub25jZQ==", b"100-continue", b"\xc2\xb2", b"chunked",
                     b"application/json"]),
)
BODIES = st.one_of(
    st.binary(max_size=200),
    st.sampled_from([b'{"type":"ping"}', b'{"type":"register","payload":{"name":"n"}}',
                     b'{"type":"join_group","payload":{"groupName":"g","createIfNotExists":true}}',
                     b'{"type":"broadcast","payload":{"groupId":"g","message":1}}', b"[" * 100, b"x" * 5000]),
)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
# Cheap examples (a few ms): eight times the profile's count.
@settings(max_examples=settings.default.max_examples * 8,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=METHODS, path=PATHS, query=QUERY_PARTS,
       headers=st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=6), body=BODIES,
       version=st.sampled_from([b"HTTP/1.1", b"HTTP/1.0"]))
def test_no_request_gets_a_500_or_a_traceback(memory: MemoryGateway, failures: list[dict[str, Any]],
                                              method: str, path: str, query: list[tuple[str, str]],
                                              headers: list[tuple[str, bytes]], body: bytes,
                                              version: bytes) -> None:
    target = path + ("?" + "&".join(f"{k}={v}" for k, v in query) if query else "")
    lines = [method.encode() + b" " + target.encode() + b" " + version]
    for name, value in headers:
        lines.append(name.encode() + b": " + value.replace(b"SECRET", memory.secret.encode()))
    if not any(name in ("Content-Length", "Transfer-Encoding") for name, _ in headers):
        lines.append(b"Content-Length: %d" % len(body))
    request = b"\r\n".join(lines) + b"\r\n\r\n" + body
    status, written = memory.exchange(request.replace(b"SECRET", memory.secret.encode()))
    if status is not None:
        assert 100 <= status < 600 and status != 500, written[:500]
    assert b"Traceback" not in written and b"Processing Failed" not in written
    assert failures == [], failures[:1]
