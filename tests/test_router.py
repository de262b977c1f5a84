"""The Router driven directly: in-memory connections and a Clock."""

from __future__ import annotations

import json

import pytest

from wingman_gateway import errors
from wingman_gateway.auth import Authenticator
from wingman_gateway.connection import CLOSE_NORMAL, CLOSE_POLICY, CLOSE_TRY_AGAIN
from wingman_gateway.cluster import wire
from wingman_gateway.cluster.rooms import ClusterRooms
from wingman_gateway.envelope import encode
from wingman_gateway.history import HistorySettings
from wingman_gateway.limits import Limits
from wingman_gateway.presence import CROWD, MAX_PACE, pace
from wingman_gateway.state import Node

from harness.memory import Harness, MemoryConnection


def error_code(reply: dict) -> str:
    assert reply["type"] == "error", reply
    return reply["payload"]["code"]


def test_register_acks_with_node_id_and_echoes_message_id() -> None:
    h = Harness()
    session, conn = h.connect()
    reply = h.request(session, conn, "register", {"name": "coder", "capabilities": ["code"]}, messageId=7)
    assert reply["type"] == "ack"
    assert reply["messageId"] == 7
    assert reply["payload"]["name"] == "coder"
    assert reply["payload"]["capabilities"] == ["code"]
    assert reply["payload"]["action"] == "register"
    assert len(reply["payload"]["nodeId"]) == 16
    assert h.router.rooms.node(reply["payload"]["nodeId"]) is session


def test_second_register_is_an_error_not_a_second_node() -> None:
    h = Harness()
    session, conn = h.node("a")
    reply = h.request(session, conn, "register", {"name": "b"}, messageId="x")
    assert error_code(reply) == errors.ALREADY_REGISTERED
    assert reply["messageId"] == "x"
    assert h.router.rooms.node_count() == 1
    assert conn.closed is None


def test_messages_before_register_are_refused() -> None:
    h = Harness()
    session, conn = h.connect()
    for kind in ("join_group", "leave_group", "broadcast", "direct", "unregister"):
        reply = h.request(session, conn, kind, {"groupName": "r", "message": 1, "targetNodeId": "x"})
        assert error_code(reply) == errors.NOT_REGISTERED
    assert h.request(session, conn, "ping")["type"] == "pong"


def test_join_creates_room_and_tells_other_members() -> None:
    h = Harness()
    a, a_conn = h.node("a", "room")
    b, b_conn = h.connect()
    h.request(b, b_conn, "register", {"name": "b"})
    reply = h.request(b, b_conn, "join_group", {"groupName": "room"})
    assert reply["payload"]["created"] is False
    assert [m["name"] for m in reply["payload"]["members"]] == ["a", "b"]
    [notice] = a_conn.take()
    assert notice["type"] == "presence"
    assert notice["payload"]["event"] == "joined"
    assert notice["payload"]["nodeId"] == b.node_id
    assert notice["payload"]["memberCount"] == 2


def test_join_missing_room_without_create_is_group_not_found() -> None:
    h = Harness()
    session, conn = h.node("a")
    reply = h.request(session, conn, "join_group", {"groupName": "nope"})
    assert error_code(reply) == errors.GROUP_NOT_FOUND
    reply = h.request(session, conn, "join_group", {"groupId": "0123456789abcdef"})
    assert error_code(reply) == errors.GROUP_NOT_FOUND


def test_join_by_id_and_rejoin_is_idempotent() -> None:
    h = Harness()
    a, a_conn = h.node("a", "room")
    room_id = next(iter(h.router.rooms.rooms())).id
    b, b_conn = h.node("b")
    assert h.request(b, b_conn, "join_group", {"groupId": room_id})["type"] == "ack"
    a_conn.take()
    again = h.request(b, b_conn, "join_group", {"groupId": room_id})
    assert again["type"] == "ack"
    assert a_conn.take() == []  # no second presence notice
    assert len(h.router.rooms.find(room_id).members) == 2


def joined_bytes(h: Harness, session: Node, conn: MemoryConnection, room: str) -> bytes:
    """The exact bytes of ``session``'s ack when it joins ``room`` (by name)."""
    conn.take()
    h.send(session, {"type": "join_group", "payload": {"groupName": room, "createIfNotExists": True},
                     "messageId": "j"})
    [ack] = conn.raw
    return ack


def test_join_ack_lists_members_in_exact_bytes() -> None:
    h = Harness(history=HistorySettings(size=10))
    a, a_conn = h.connect()
    h.request(a, a_conn, "register", {"name": "Zo\u00eb \"\u2028\"", "capabilities": ["plan", "</x>"],
                                      "agentName": "planner"})
    b, b_conn = h.node("b")
    joined_bytes(h, a, a_conn, "room")
    [room] = h.router.rooms.rooms()
    epoch = str(h.router.rooms.history.recover(room.id, None).fields()["epoch"])
    assert joined_bytes(h, b, b_conn, "room") == (
        b'{"type":"ack","payload":{"groupId":"%s","groupName":"room","created":false,"description":null,'
        b'"strategy":"parallel","members":[{"nodeId":"%s","name":"Zo\\u00eb \\"\\u2028\\"",'
        b'"capabilities":["plan","</x>"],"agentName":"planner"},{"nodeId":"%s","name":"b","capabilities":[]}],'
        b'"offset":0,"epoch":"%s","action":"join_group"},"messageId":"j","timestamp":1700000000000}'
        % (room.id.encode(), a.registered_id.encode(), b.registered_id.encode(), epoch.encode())
    )


def test_join_ack_shows_a_remote_member_as_its_gateway_last_described_it() -> None:
    h = Harness(rooms=lambda clock: ClusterRooms(clock, "gateway-a", wire.Names(0)))
    rooms = h.router.rooms
    assert isinstance(rooms, ClusterRooms)
    a, a_conn = h.node("a")
    joined_bytes(h, a, a_conn, "room")
    [room] = rooms.rooms()
    far = "b0b0b0b0b0b0b0b0"
    record = {"name": "far", "capabilities": ["look"], "transport": "websocket",
              "rooms": {room.id: wire.room_meta(room)}}
    rooms.apply(rooms.peer("gateway-b"), far, record, "left")
    member_a = b'{"nodeId":"%s","name":"a","capabilities":[]}' % a.registered_id.encode()
    head = b'{"type":"ack","payload":{"groupId":"%s","groupName":"room","created":false,' % room.id.encode()
    tail = b',"action":"join_group"},"messageId":"j","timestamp":1700000000000}'
    b, b_conn = h.node("b")
    assert joined_bytes(h, b, b_conn, "room") == head + (
        b'"description":null,"strategy":"parallel","members":[%s,'
        b'{"nodeId":"b0b0b0b0b0b0b0b0","name":"far","capabilities":["look"]},'
        b'{"nodeId":"%s","name":"b","capabilities":[]}]' % (member_a, b.registered_id.encode())
    ) + tail
    # The other gateway announces the node anew: later member lists show it so.
    renamed = dict(record, name="farther", capabilities=["look", "fetch"], agentName="scout")
    rooms.apply(rooms.peer("gateway-b"), far, renamed, "left")
    c, c_conn = h.node("c")
    assert joined_bytes(h, c, c_conn, "room") == head + (
        b'"description":null,"strategy":"parallel","members":[%s,'
        b'{"nodeId":"b0b0b0b0b0b0b0b0","name":"farther","capabilities":["look","fetch"],"agentName":"scout"},'
        b'{"nodeId":"%s","name":"b","capabilities":[]},{"nodeId":"%s","name":"c","capabilities":[]}]'
        % (member_a, b.registered_id.encode(), c.registered_id.encode())
    ) + tail


def test_presence_of_one_turn_in_exact_bytes_from_each_member_s_start() -> None:
    h = Harness()
    a, a_conn = h.node("a", "room")
    b, b_conn = h.node("b")
    c, c_conn = h.node("c")
    [room] = h.router.rooms.rooms()
    for session in (b, c):  # both joins in one turn
        h.router.receive(session, json.dumps({"type": "join_group", "payload": {"groupName": "room"}}))
    for conn in (a_conn, b_conn, c_conn):
        conn.take()
    h.clock.advance(0)
    ids = {name: session.registered_id.encode() for name, session in (("b", b), ("c", c))}
    told_b = b'{"nodeId":"%s","name":"b","capabilities":[],"event":"joined","memberCount":2}' % ids["b"]
    told_c = b'{"nodeId":"%s","name":"c","capabilities":[],"event":"joined","memberCount":3}' % ids["c"]
    assert a_conn.raw == [
        b'{"type":"presence","groupId":"%s","timestamp":1700000000000,"payload":{"event":"batch",'
        b'"groupId":"%s","groupName":"room","memberCount":3,"events":[%s,%s]}}'
        % (room.id.encode(), room.id.encode(), told_b, told_c)
    ]
    assert b_conn.raw == [
        b'{"type":"presence","nodeId":"%s","groupId":"%s","payload":{"nodeId":"%s","name":"c","capabilities":[],'
        b'"event":"joined","groupId":"%s","groupName":"room","memberCount":3},"timestamp":1700000000000}'
        % (ids["c"], room.id.encode(), ids["c"], room.id.encode())
    ]
    assert c_conn.raw == []


def test_a_crowded_room_is_told_at_once_when_quiet_then_once_a_pace() -> None:
    h = Harness()
    watcher, seen = h.node("watcher", "crowd")
    for n in range(CROWD):  # the room now has CROWD + 1 members
        h.node(f"m{n}", "crowd")
    h.clock.advance(MAX_PACE)  # the joins' notices go out
    h.clock.advance(MAX_PACE)  # then the room is quiet for a while
    seen.take()

    def joins(*names: str) -> None:
        for name in names:
            h.node(name, "crowd")  # each join its own turn

    joins("first")
    [told] = seen.take()  # quiet: at the end of its turn
    assert (told["payload"]["event"], told["payload"]["name"]) == ("joined", "first")
    joins("second", "third")  # within the pace of the last notice: they wait
    assert seen.take() == []
    wait = pace(CROWD + 4)  # the room's size when the notice goes out
    h.clock.advance(wait - 0.001)
    assert seen.take() == []
    h.clock.advance(0.001)
    [batch] = seen.take()  # one envelope, both events in order
    assert [e["name"] for e in batch["payload"]["events"]] == ["second", "third"]
    h.send(watcher, {"type": "broadcast", "payload": {"groupName": "crowd", "message": "hi"}})
    joins("fourth")
    h.clock.advance(pace(CROWD + 5))
    assert [m["payload"]["name"] for m in seen.take()] == ["fourth"]  # paced, and never lost


def test_broadcast_reaches_every_other_member_untouched() -> None:
    h = Harness()
    a, a_conn = h.node("a", "room")
    b, b_conn = h.node("b", "room")
    c, c_conn = h.node("c", "room")
    for conn in (a_conn, b_conn, c_conn):
        conn.take()
    message = '{ "type" : "agent-stream", "chunk": {"data": [1e5, "\\u00e9", 12345678901234567890]} }'
    h.send(a, '{"type":"broadcast","payload":{"groupId":"room","message":' + message + "}}")
    assert a_conn.raw == []
    for conn in (b_conn, c_conn):
        [raw] = conn.raw
        assert raw.endswith(b',"payload":' + message.encode() + b"}")
        [received] = conn.take()
        assert received["type"] == "broadcast"
        assert received["fromNodeId"] == a.node_id
        assert received["nodeId"] == a.node_id
        assert received["fromName"] == "a"
        assert received["groupName"] == "room"
        assert received["payload"] == json.loads(message)


def test_broadcast_is_encoded_once_for_all_recipients() -> None:
    h = Harness()
    a, _ = h.node("a", "room")
    sent = []
    for name in ("b", "c", "d"):
        session, conn = h.node(name, "room")
        session.send = sent.append
    sent.clear()  # presence notices of the later joins
    h.send(a, {"type": "broadcast", "payload": {"groupId": "room", "message": "x"}})
    assert len(sent) == 3
    assert sent[0] is sent[1] is sent[2]


def test_broadcast_ack_only_with_message_id() -> None:
    h = Harness()
    a, a_conn = h.node("a", "room")
    h.node("b", "room")
    a_conn.take()
    h.send(a, {"type": "broadcast", "payload": {"groupId": "room", "message": 1}})
    assert a_conn.take() == []
    reply = h.request(a, a_conn, "broadcast", {"groupId": "room", "message": 1}, messageId="m")
    assert reply["payload"]["recipients"] == 1
    assert reply["messageId"] == "m"


def test_broadcast_needs_membership_room_and_message() -> None:
    h = Harness()
    h.node("a", "room")
    b, b_conn = h.node("b")
    reply = h.request(b, b_conn, "broadcast", {"groupId": "room", "message": 1})
    assert error_code(reply) == errors.NOT_A_MEMBER
    reply = h.request(b, b_conn, "broadcast", {"groupId": "other", "message": 1})
    assert error_code(reply) == errors.GROUP_NOT_FOUND
    h.request(b, b_conn, "join_group", {"groupName": "room"})
    reply = h.request(b, b_conn, "broadcast", {"groupId": "room"})
    assert error_code(reply) == errors.INVALID_REQUEST
    assert reply["payload"]["message"] == "'message' is required"


def test_broadcast_room_in_envelope() -> None:
    h = Harness()
    a, _ = h.node("a", "room")
    b, b_conn = h.node("b", "room")
    room_id = next(iter(h.router.rooms.rooms())).id
    h.send(a, {"type": "broadcast", "groupId": room_id, "payload": {"message": "hi"}})
    assert b_conn.take()[0]["payload"] == "hi"


def test_direct_reaches_only_the_target() -> None:
    h = Harness()
    a, a_conn = h.node("a", "room")
    b, b_conn = h.node("b", "room")
    c, c_conn = h.node("c", "room")
    for conn in (a_conn, b_conn, c_conn):
        conn.take()
    reply = h.request(a, a_conn, "direct", {"targetNodeId": b.node_id, "message": {"k": 1}}, messageId=1)
    assert reply["payload"] == {"targetNodeId": b.node_id, "delivered": True, "action": "direct"}
    [received] = b_conn.take()
    assert received["type"] == "direct"
    assert received["fromNodeId"] == a.node_id
    assert received["targetNodeId"] == b.node_id
    assert received["payload"] == {"k": 1}
    assert c_conn.take() == []
    reply = h.request(a, a_conn, "direct", {"targetNodeId": "ffffffffffffffff", "message": 1})
    assert error_code(reply) == errors.NODE_NOT_FOUND
    reply = h.request(a, a_conn, "direct", {"message": 1})
    assert error_code(reply) == errors.INVALID_REQUEST


def test_leave_tells_others_and_empty_rooms_vanish() -> None:
    h = Harness()
    a, a_conn = h.node("a", "room")
    b, b_conn = h.node("b", "room")
    a_conn.take()
    reply = h.request(b, b_conn, "leave_group", {"groupName": "room"})
    assert reply["type"] == "ack"
    [notice] = a_conn.take()
    assert notice["payload"]["event"] == "left"
    assert notice["payload"]["reason"] == "left"
    reply = h.request(b, b_conn, "leave_group", {"groupName": "room"})
    assert error_code(reply) == errors.NOT_A_MEMBER
    room_id = next(iter(h.router.rooms.rooms())).id
    h.request(a, a_conn, "leave_group", groupId=room_id)
    assert h.router.rooms.room_count() == 0
    assert h.router.rooms.find_by_name("room") is None


def test_disconnect_leaves_every_room_at_once() -> None:
    h = Harness()
    a, a_conn = h.node("a", "r1", "r2")
    b, b_conn = h.node("b", "r1", "r2", "r3")
    a_conn.take()
    h.router.disconnect(b, "connection lost")
    h.clock.advance(0)  # end of the turn: presence goes out
    notices = a_conn.take()
    assert sorted(n["payload"]["groupName"] for n in notices) == ["r1", "r2"]
    assert all(n["payload"]["event"] == "left" for n in notices)
    assert all(n["payload"]["reason"] == "connection lost" for n in notices)
    assert sorted(r.name for r in h.router.rooms.rooms()) == ["r1", "r2"]
    assert h.router.rooms.node(b.node_id) is None
    h.router.disconnect(b, "again")  # idempotent
    assert a_conn.take() == []


def test_unregister_acks_then_closes_normally() -> None:
    h = Harness()
    a, a_conn = h.node("a", "room")
    reply = h.request(a, a_conn, "unregister")
    assert reply["type"] == "ack"
    assert a_conn.closed == (CLOSE_NORMAL, "unregistered")
    assert h.router.rooms.node_count() == 0


def test_unknown_type_and_bad_json_leave_connection_usable() -> None:
    h = Harness()
    a, a_conn = h.node("a", "room")
    b, b_conn = h.node("b", "room")
    a_conn.take()
    h.send(a, '{"type":"teleport","messageId":"t"}')
    [reply] = a_conn.take()
    assert error_code(reply) == errors.UNKNOWN_MESSAGE_TYPE
    assert reply["messageId"] == "t"
    for bad in ("{nope", "[]", '{"type": 3}', b"\xff\xfe", '{"type":"ping","messageId":[1]}'):
        h.send(a, bad)
        [reply] = a_conn.take()
        assert error_code(reply) == errors.INVALID_MESSAGE
    assert a_conn.closed is None
    h.send(a, {"type": "broadcast", "payload": {"groupId": "room", "message": "still here"}})
    assert b_conn.take()[0]["payload"] == "still here"


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"name": "x" * 101}, "'name' is longer than 100 characters"),
        ({"name": 5}, "'name' must be a string"),
        ({}, "'name' is required"),
        ({"name": "a", "capabilities": "code"}, "'capabilities' must be a list of strings"),
        ({"name": "a", "metadata": []}, "'metadata' must be an object"),
    ],
)
def test_register_validation_names_the_field(payload: dict, field: str) -> None:
    h = Harness()
    session, conn = h.connect()
    reply = h.request(session, conn, "register", payload)
    assert error_code(reply) == errors.INVALID_REQUEST
    assert reply["payload"]["message"] == field
    assert session.node_id is None


def test_long_description_and_bad_strategy() -> None:
    h = Harness()
    a, a_conn = h.node("a")
    reply = h.request(a, a_conn, "join_group", {"groupName": "r", "createIfNotExists": True, "description": "d" * 501})
    assert reply["payload"]["message"] == "'description' is longer than 500 characters"
    reply = h.request(a, a_conn, "join_group", {"groupName": "r", "createIfNotExists": True, "strategy": "random"})
    assert reply["payload"]["message"] == "'strategy' must be one of: parallel, sequential"
    reply = h.request(a, a_conn, "join_group", {"groupName": "r", "createIfNotExists": True, "description": "d" * 500})
    assert reply["type"] == "ack"


def test_oversized_message_is_refused() -> None:
    h = Harness(Limits(max_payload=1000))
    a, a_conn = h.node("a", "room")
    b, b_conn = h.node("b", "room")
    a_conn.take()
    h.send(a, {"type": "broadcast", "payload": {"groupId": "room", "message": "x" * 1000}})
    [reply] = a_conn.take()
    assert error_code(reply) == errors.PAYLOAD_TOO_LARGE
    assert b_conn.take() == []
    assert a_conn.closed is None


def test_deep_nesting_is_refused() -> None:
    h = Harness()
    a, a_conn = h.node("a", "room")
    deep = "[" * 65 + "]" * 65
    h.send(a, '{"type":"broadcast","payload":{"groupId":"room","message":' + deep + "}}")
    [reply] = a_conn.take()
    assert error_code(reply) == errors.INVALID_MESSAGE
    assert reply["payload"]["message"] == "JSON nested deeper than 64 levels"
    brackets_in_strings = json.dumps({"type": "ping", "x": "[" * 500})
    h.send(a, brackets_in_strings)
    assert a_conn.take()[0]["type"] == "pong"


def test_max_nodes_refuses_and_closes() -> None:
    h = Harness(Limits(max_nodes=2))
    h.node("a")
    h.node("b")
    session, conn = h.connect()
    reply = h.request(session, conn, "register", {"name": "c"})
    assert error_code(reply) == errors.MAX_NODES_REACHED
    assert conn.closed == (CLOSE_TRY_AGAIN, "gateway is full (2 nodes)")
    assert h.router.rooms.node_count() == 2


def test_room_limits() -> None:
    h = Harness(Limits(max_rooms_per_node=2, max_rooms=3))
    a, a_conn = h.node("a", "r1", "r2")
    reply = h.request(a, a_conn, "join_group", {"groupName": "r3", "createIfNotExists": True})
    assert error_code(reply) == errors.FORBIDDEN
    assert reply["payload"]["message"] == "a node may be in at most 2 rooms"
    h.node("b", "r3")
    c, c_conn = h.node("c")
    reply = h.request(c, c_conn, "join_group", {"groupName": "r4", "createIfNotExists": True})
    assert error_code(reply) == errors.FORBIDDEN
    assert reply["payload"]["message"] == "the gateway has reached its limit of 3 rooms"
    assert h.request(c, c_conn, "join_group", {"groupName": "r1"})["type"] == "ack"


def test_short_name_limit_still_takes_ids() -> None:
    """Ids are 16 characters whatever the name limit: rooms and nodes are still reached by id."""
    h = Harness(Limits(max_name_length=4))
    a, a_conn = h.node("a", "ops")
    b, b_conn = h.node("b", "ops")
    room_id = next(iter(a.rooms))
    a_conn.take()
    reply = h.request(a, a_conn, "broadcast", {"groupId": room_id, "message": "by id"}, messageId=1)
    assert reply["payload"]["recipients"] == 1
    reply = h.request(a, a_conn, "direct", {"targetNodeId": b.node_id, "message": 2}, messageId=2)
    assert reply["payload"]["delivered"] is True
    reply = h.request(a, a_conn, "join_group", {"groupName": "longer", "createIfNotExists": True})
    assert error_code(reply) == errors.INVALID_REQUEST
    assert reply["payload"]["message"] == "'groupName' is longer than 4 characters"
    reply = h.request(a, a_conn, "broadcast", {"groupId": "x" * 17, "message": 1})
    assert reply["payload"]["message"] == "'groupId' is longer than 16 characters"
    assert [m["payload"] for m in b_conn.take() if m["type"] in ("broadcast", "direct")] == ["by id", 2]


def test_auth_failure_is_fatal_and_secret_free() -> None:
    h = Harness(authenticator=Authenticator(required=True, shared_token="s3cret-token"))
    session, conn = h.connect()
    reply = h.request(session, conn, "register", {"name": "a", "token": "wrong"})
    assert error_code(reply) == errors.AUTH_FAILED
    assert reply["payload"]["message"] == "authentication failed: token not accepted"
    assert conn.closed == (CLOSE_POLICY, "authentication failed: token not accepted")
    assert session not in h.router.connections
    other, other_conn = h.connect()
    assert h.request(other, other_conn, "register", {"name": "b", "token": "s3cret-token"})["type"] == "ack"
    assert "s3cret" not in json.dumps(h.router.node_list())


def test_heartbeat_pings_and_drops_silent_connections() -> None:
    h = Harness(Limits(ping_interval=30, ping_timeout=60))
    talker, talker_conn = h.node("talker", "room")
    silent, silent_conn = h.node("silent", "room")
    never, never_conn = h.connect()  # never registers, never pings
    for _ in range(4):
        h.clock.advance(20)
        h.router.ping_all()
        h.send(talker, {"type": "pong"})
        h.router.drop_silent()
    assert silent_conn.closed == (CLOSE_POLICY, "no message for 60 s (heartbeat timeout)")
    assert never_conn.closed is not None
    assert talker_conn.closed is None
    assert set(h.router.connections) == {talker}
    assert any(m["type"] == "ping" for m in talker_conn.sent)
    h.clock.advance(0)
    notices = [m for m in talker_conn.sent if m["type"] == "presence"]
    assert notices[-1]["payload"]["reason"] == "heartbeat timeout"


def test_health_summary_counts() -> None:
    h = Harness()
    a, _ = h.node("a", "r1")
    h.node("b", "r1", "r2")
    h.clock.advance(5)
    summary = h.router.summary()
    assert summary["totalNodes"] == 2
    assert summary["totalGroups"] == 2
    assert summary["uptime"] == 5000
    assert summary["messagesProcessed"] == 5
    [node] = [n for n in h.router.node_list() if n["name"] == "b"]
    assert node["rooms"] == ["r1", "r2"]
    assert node["transport"] == "memory"


def test_batch_records_are_the_classic_payloads_without_the_room() -> None:
    """A record of a batch is written from the node's kept introduction: the
    same bytes as its classic payload less ``groupId`` and ``groupName``,
    with an agent name, capabilities and a departure's reason."""
    h = Harness()
    a, a_conn = h.node("a", "room")
    c, _ = h.node("c", "room")
    b, b_conn = h.connect()
    h.request(b, b_conn, "register", {"name": "b\u00e9", "agentName": "scout", "capabilities": ["look", "fetch"]})
    a_conn.take()
    h.router.receive(b, json.dumps({"type": "join_group", "payload": {"groupName": "room"}}))
    h.router.disconnect(c, "connection lost")  # both in one turn
    h.clock.advance(0)
    [raw] = a_conn.raw
    [batch] = a_conn.take()
    classic = [
        {"nodeId": b.registered_id, "name": "b\u00e9", "capabilities": ["look", "fetch"], "agentName": "scout",
         "event": "joined", "memberCount": 3},
        {"nodeId": c.registered_id, "name": "c", "capabilities": [], "event": "left", "memberCount": 2,
         "reason": "connection lost"},
    ]
    assert batch["payload"]["events"] == classic
    records = raw.split(b'"events":[')[1]
    assert records == b",".join(encode(record) for record in classic) + b"]}}"
