"""The HTTP bridge's parts driven directly: the delivery queue, sessions on a
Router with a Clock, the poll and stream readers, CORS, and the body limit
on a real twisted.web channel over an in-memory transport."""

from __future__ import annotations

import json
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web.test.requesthelper import DummyRequest

from harness.memory import Harness
from wingman_gateway import errors
from wingman_gateway.transports.bridge.cors import CorsPolicy
from wingman_gateway.transports.bridge.options import BridgeOptions
from wingman_gateway.transports.bridge.queue import DeliveryQueue
from wingman_gateway.transports.bridge.readers import PollReader, StreamReader, sse_event
from wingman_gateway.transports.bridge.resources import HTTP_STATUS, bridge_resource
from wingman_gateway.transports.bridge.session import Bridge, BridgeSession
from wingman_gateway.client.sse import Event, EventStreamProtocol
from wingman_gateway.limits import Limits
from wingman_gateway.transports.websocket import GatewayWebSocketFactory, websocket_resource
from wingman_gateway.web.health import HealthSources
from wingman_gateway.web.site import build_site


def notice(lost: int) -> bytes:
    return b'{"lost":%d}' % lost


# --- the delivery queue -----------------------------------------------------------


def test_queue_numbers_messages_and_keeps_them_until_confirmed() -> None:
    queue = DeliveryQueue(10, 1000, notice)
    for text in (b"a", b"b", b"c"):
        assert queue.push(text)
    assert queue.after(0) == [(1, b"a"), (2, b"b"), (3, b"c")]
    assert queue.after(2) == [(3, b"c")] and queue.after(3) == []
    queue.confirm(2)
    assert queue.after(0) == [(3, b"c")]  # confirmed ones are gone for good
    assert (len(queue), queue.bytes, queue.confirmed) == (1, 1, 2)
    queue.confirm(1)  # going back confirms nothing more
    assert queue.after(0) == [(3, b"c")]
    queue.confirm(99)  # never past what exists
    assert queue.confirmed == 3 and len(queue) == 0
    assert queue.push(b"d") and queue.after(3) == [(4, b"d")]


def test_count_overflow_reports_the_lost_messages_where_they_were_lost() -> None:
    queue = DeliveryQueue(3, 1000, notice)
    assert [queue.push(b"m%d" % n) for n in range(7)] == [True] * 3 + [False] * 4
    assert (queue.lost, queue.lost_total) == (4, 4)
    assert [data for _, data in queue.after(0)] == [b"m0", b"m1", b"m2"]
    queue.confirm(2)  # room again: the notice goes in first
    assert queue.after(2) == [(3, b"m2"), (4, b'{"lost":4}')]
    assert queue.lost == 0
    assert queue.push(b"m7")  # later messages follow the notice
    assert not queue.push(b"m8")  # full again
    queue.confirm(5)
    assert queue.after(5) == [(6, b'{"lost":1}')]
    assert queue.lost_total == 5


def test_byte_overflow_is_reported_at_once_and_nothing_overtakes_a_notice() -> None:
    queue = DeliveryQueue(100, 30, notice)
    assert queue.push(b"x" * 20)
    assert not queue.push(b"y" * 20)  # too many bytes; the notice fits
    assert queue.after(0) == [(1, b"x" * 20), (2, b'{"lost":1}')]
    assert not queue.push(b"z" * 20)
    assert queue.lost == 1  # no room for its notice yet
    assert not queue.push(b"w")  # would fit, but may not overtake the pending notice
    assert queue.lost == 2
    queue.confirm(2)
    assert queue.after(2) == [(3, b'{"lost":2}')]
    assert queue.push(b"w")


def test_a_message_larger_than_the_whole_queue_is_reported_not_kept() -> None:
    queue = DeliveryQueue(10, 16, notice)
    assert not queue.push(b"q" * 64)
    assert queue.after(0) == [(1, b'{"lost":1}')]


# --- sessions on a Router -----------------------------------------------------------


class Rig(Harness):
    """A Router and a Bridge on one Clock."""

    def __init__(self, limits: Limits | None = None, **options: Any) -> None:
        super().__init__(limits)
        self.bridge = Bridge(self.router, BridgeOptions(**options), self.clock)

    def bridge_node(self, name: str, *rooms: str) -> BridgeSession:
        session = self.bridge.open("tcp:127.0.0.1:1")
        replies = session.receive(json.dumps({"type": "register", "payload": {"name": name}}).encode())
        assert replies[0].envelope["type"] == "ack"
        self.bridge.admit(session)
        for room in rooms:
            envelope = {"type": "join_group", "payload": {"groupName": room, "createIfNotExists": True}}
            assert session.receive(json.dumps(envelope).encode())[0].envelope["type"] == "ack"
        return session


def queued(session: BridgeSession) -> list[dict[str, Any]]:
    return [json.loads(data) for _, data in session.queue.after(0)]


def test_direct_reply_is_captured_and_everything_else_is_queued() -> None:
    rig = Rig()
    alice = rig.bridge_node("alice", "room")
    before = len(alice.queue)
    # A direct message to oneself: the message is queued, its ack is the reply.
    envelope = {"type": "direct", "messageId": 9, "payload": {"targetNodeId": alice.node.node_id, "message": "me"}}
    replies = alice.receive(json.dumps(envelope).encode())
    assert [r.envelope["type"] for r in replies] == ["ack"]
    assert replies[0].envelope["messageId"] == 9
    assert [m["type"] for m in queued(alice)[before:]] == ["direct"]
    # Presence and broadcasts from others are queued, never captured.
    bob, bob_conn = rig.node("bob", "room")
    rig.send(bob, {"type": "broadcast", "payload": {"groupId": "room", "message": {"n": 1}}})
    assert [m["type"] for m in queued(alice)[before + 1 :]] == ["presence", "broadcast"]
    # The Router's heartbeat is queued too.
    rig.router.ping_all()
    assert queued(alice)[-1]["type"] == "ping"


def test_secret_lookup_and_forgetting() -> None:
    rig = Rig()
    session = rig.bridge.open("tcp:127.0.0.1:1")
    session.receive(b'{"type":"register","payload":{"name":"a"}}')
    secret = rig.bridge.admit(session)
    assert len(secret) >= 40 and secret != session.node.node_id
    assert rig.bridge.find(secret) is session
    assert rig.bridge.find(secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None
    assert rig.bridge.find("") is None
    session.close(1000, "bye")
    assert rig.bridge.find(secret) is None and len(rig.bridge) == 0


def test_session_without_a_reader_times_out_like_a_lost_connection() -> None:
    rig = Rig(session_timeout=60.0)
    alice = rig.bridge_node("alice", "room")
    bob, bob_conn = rig.node("bob", "room")
    reader = PollReader(alice, DummyRequest([b""]), alice.queue.last_seq, 30.0)
    reader.start()  # attached: no expiry while it is held
    rig.clock.advance(29)
    assert alice.reader is reader
    rig.clock.advance(1)  # the poll ends empty at 30 s; the 60 s start now
    assert alice.reader is None and alice.ended is None
    rig.clock.advance(59)
    assert alice.ended is None
    rig.clock.advance(1)
    assert alice.ended is not None and alice.node.closed
    left = [m for m in bob_conn.take() if m["type"] == "presence"]
    assert left[-1]["payload"]["event"] == "left"
    assert left[-1]["payload"]["reason"] == "bridge session timeout"
    assert rig.router.rooms.node(alice.node.node_id) is None and len(rig.bridge) == 0


def test_router_heartbeat_drops_a_silent_bridge_node_and_ends_its_stream() -> None:
    rig = Rig(Limits(ping_interval=10, ping_timeout=20))
    alice = rig.bridge_node("alice", "room")
    request = DummyRequest([b""])
    StreamReader(alice, request, 0).start()
    rig.clock.advance(25)
    rig.router.drop_silent()
    text = b"".join(request.written).decode()
    assert "event: close" in text and '"code": 1008' in text and "heartbeat timeout" in text
    assert request.finished and alice.node.closed


# --- readers -------------------------------------------------------------------------


def body_of(request: DummyRequest) -> dict[str, Any]:
    assert request.finished == 1
    return json.loads(b"".join(request.written))


def test_poll_holds_until_a_message_then_answers_with_sequence_numbers() -> None:
    rig = Rig()
    alice = rig.bridge_node("alice", "room")
    bob, _ = rig.node("bob")
    start = alice.queue.last_seq
    request = DummyRequest([b""])
    PollReader(alice, request, start, 30.0).start()
    assert not request.finished
    # Within one reactor turn: bob's join (presence) and a broadcast.
    join = {"type": "join_group", "payload": {"groupName": "room"}}
    rig.router.receive(bob, json.dumps(join))
    rig.router.receive(bob, json.dumps({"type": "broadcast", "payload": {"groupId": "room", "message": [1]}}))
    assert not request.finished  # answered at the end of the reactor turn, as one batch
    rig.clock.advance(0)
    messages = body_of(request)["messages"]
    assert [m["seq"] for m in messages] == [start + 1, start + 2]
    assert [m["envelope"]["type"] for m in messages] == ["presence", "broadcast"]
    assert messages[1]["envelope"]["payload"] == [1]


def test_poll_times_out_empty_and_a_newer_poll_finishes_an_older_one() -> None:
    rig = Rig()
    alice = rig.bridge_node("alice")
    first = DummyRequest([b""])
    PollReader(alice, first, alice.queue.last_seq, 5.0).start()
    rig.clock.advance(5)
    assert body_of(first) == {"messages": []}
    older, newer = DummyRequest([b""]), DummyRequest([b""])
    PollReader(alice, older, alice.queue.last_seq, 30.0).start()
    PollReader(alice, newer, alice.queue.last_seq, 30.0).start()
    assert body_of(older) == {"messages": []} and not newer.finished
    rig.router.ping_all()
    rig.clock.advance(0)
    assert [m["envelope"]["type"] for m in body_of(newer)["messages"]] == ["ping"]


def test_a_poll_whose_client_left_keeps_its_messages_queued() -> None:
    rig = Rig()
    alice = rig.bridge_node("alice")
    request = DummyRequest([b""])
    after = alice.queue.last_seq
    PollReader(alice, request, after, 30.0).start()
    request.processingFailed(Failure(ConnectionDone()))
    assert alice.reader is None
    rig.router.ping_all()
    assert not request.written and [seq for seq, _ in alice.queue.after(after)] == [after + 1]


def test_stream_writes_numbered_events_heartbeats_and_a_close() -> None:
    rig = Rig(heartbeat=15.0)
    alice = rig.bridge_node("alice", "room")
    rig.node("bob", "room")
    request = DummyRequest([b""])
    StreamReader(alice, request, 0).start()
    assert request.responseHeaders.getRawHeaders(b"content-type")[0].startswith(b"text/event-stream")
    opening = b"".join(request.written)
    assert opening.startswith(b": wingman bridge stream\nretry: 1000\n\n")
    assert b'id: 1\ndata: {"type":"presence"' in opening  # queued before the stream opened
    request.written.clear()
    rig.clock.advance(15)
    assert request.written == [b": keepalive\n\n"]
    alice.close(1001, "gateway shutting down")
    assert request.written[-1] == b'event: close\ndata: {"code": 1001, "reason": "gateway shutting down"}\n\n'
    assert request.finished


def test_event_lines_split_so_json_with_line_breaks_survives() -> None:
    assert sse_event(7, b'{"a":\n1,\r\n"b":2}') == b'id: 7\ndata: {"a":\ndata: 1,\ndata: "b":2}\n\n'
    events: list[Event] = []
    parser = EventStreamProtocol(events.append, lambda: None)
    for piece in (b": hello\nretry: 1000\n\n", sse_event(7, b'{"a":\n1}')[:9], sse_event(7, b'{"a":\n1}')[9:]):
        parser.dataReceived(piece)
    parser.dataReceived(b"event: close\r\ndata: {}\r\n\r\n")
    assert events == [Event("7", "message", '{"a":\n1}'), Event("7", "close", "{}")]  # the id carries over


# --- CORS ----------------------------------------------------------------------------


def cors_request(origin: str | None, method: bytes = b"GET") -> DummyRequest:
    request = DummyRequest([b""])
    request.method = method
    if origin is not None:
        request.requestHeaders.setRawHeaders(b"origin", [origin.encode()])
    return request


def test_cors_echoes_only_allowed_origins() -> None:
    policy = CorsPolicy(frozenset({"http://127.0.0.1:8000"}))
    allowed = cors_request("http://127.0.0.1:8000", b"OPTIONS")
    assert policy.admit(allowed)
    policy.preflight(allowed)
    headers = allowed.responseHeaders
    assert headers.getRawHeaders(b"access-control-allow-origin") == [b"http://127.0.0.1:8000"]
    assert b"X-Wingman-Session" in headers.getRawHeaders(b"access-control-allow-headers")[0]
    assert b"Last-Event-ID" in headers.getRawHeaders(b"access-control-allow-headers")[0]
    assert allowed.responseCode == 204
    denied = cors_request("http://127.0.0.1:8001")
    assert not policy.admit(denied)
    assert not any(name.lower().startswith(b"access-control") for name, _ in denied.responseHeaders.getAllRawHeaders())
    assert policy.admit(cors_request(None))  # not from a page
    assert CorsPolicy(frozenset({"*"})).admit(cors_request("https://anything.example"))


def test_every_reply_code_has_an_http_status() -> None:
    assert set(HTTP_STATUS) == set(errors.ALL_CODES) - {errors.MESSAGES_LOST}
    assert HTTP_STATUS[errors.RATE_LIMITED] == 429 and HTTP_STATUS[errors.PAYLOAD_TOO_LARGE] == 413
    assert HTTP_STATUS[errors.GROUP_NOT_FOUND] == HTTP_STATUS[errors.NODE_NOT_FOUND] == 404


# --- the body limit on a real HTTP channel ------------------------------------------------


def channel(rig: Rig) -> tuple[Any, StringTransport]:
    router = rig.router
    health = HealthSources(router.gateway_name, False, router.summary, router.now_ms)
    children = {
        b"ws": websocket_resource(GatewayWebSocketFactory(router, rig.clock)),
        b"bridge": bridge_resource(rig.bridge),
    }
    site = build_site(router, health, children, rig.bridge.cors)
    protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport


@pytest.mark.parametrize("expect_continue", [False, True])
def test_a_declared_oversized_body_is_refused_before_any_of_it_arrives(expect_continue: bool) -> None:
    rig = Rig(Limits(max_payload=1024))
    protocol, transport = channel(rig)
    head = b"POST /bridge/send HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n"
    if expect_continue:
        head += b"Expect: 100-continue\r\n"
    protocol.dataReceived(head + b"\r\n")
    answer = transport.value()
    assert answer.startswith(b"HTTP/1.1 413 ") and b"100 Continue" not in answer
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert body["payload"]["code"] == "PAYLOAD_TOO_LARGE" and body["payload"]["details"] == {"limit": 1024}
    assert transport.disconnecting  # closing once the answer is out
    # The rest of the body is read and thrown away, not buffered.
    for _ in range(100):
        protocol.dataReceived(b"x" * 65536)
    assert transport.value() == answer
    assert rig.router.connections == set()


def test_a_chunked_body_is_refused_once_it_passes_the_limit() -> None:
    rig = Rig(Limits(max_payload=1024))
    protocol, transport = channel(rig)
    protocol.dataReceived(b"POST /bridge/send HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    protocol.dataReceived(b"200\r\n" + b" " * 512 + b"\r\n")
    assert transport.value() == b""
    protocol.dataReceived(b"300\r\n" + b" " * 768 + b"\r\n")
    assert transport.value().startswith(b"HTTP/1.1 413 ")
    protocol.dataReceived(b"10\r\n" + b" " * 16 + b"\r\n0\r\n\r\n")  # the end: still no second answer
    assert transport.value().count(b"HTTP/1.1") == 1


def test_a_body_within_the_limit_is_routed() -> None:
    rig = Rig(Limits(max_payload=1024))
    protocol, transport = channel(rig)
    envelope = b'{"type":"ping","messageId":"p"}'
    padded = envelope + b" " * (1024 - len(envelope))
    protocol.dataReceived(
        b"POST /bridge/send HTTP/1.1\r\nHost: x\r\nContent-Length: 1024\r\n\r\n" + padded
    )
    answer = transport.value()
    assert answer.startswith(b"HTTP/1.1 200 ") and b'"type":"pong"' in answer
