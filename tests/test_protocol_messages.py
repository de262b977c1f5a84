"""Protocol v1 message types against the real ``twistd wingman-gateway`` process.

Every test talks to the gateway only through the independent ``websockets``
client, so what is checked is what a real client sees on the wire.
"""

from __future__ import annotations

import json
import re
import socket
from typing import Any, Iterator

import pytest

from harness.support import (
    GatewayProcess,
    Node,
    NodePool,
    abort,
    assert_delivers,
    assert_usable,
    expect_closed,
    expect_error,
    expect_silence,
    health,
    http_get,
    reply_to,
    running_gateway,
    wait_totals,
)

NODE_ID = re.compile(r"^[0-9a-f]{16}$")


pytestmark = pytest.mark.gateway(shared=True)  # one gateway for the module




def described(node: Node, name: str, capabilities: list[str] | None = None) -> dict[str, Any]:
    """How other members see ``node`` in member lists and presence notices."""
    return {"nodeId": node.node_id, "name": name, "capabilities": capabilities or []}


def expect_presence(
    node: Node, who: Node, name: str, event: str, room_id: str, room: str, count: int,
    reason: str | None = None,
) -> dict[str, Any]:
    """The next presence notice on ``node`` is exactly this one."""
    notice = node.recv_type("presence")
    assert notice["type"] == "presence", notice
    assert notice["nodeId"] == who.node_id and notice["groupId"] == room_id
    expected = {**described(who, name), "event": event, "groupId": room_id, "groupName": room,
                "memberCount": count}
    if reason is not None:
        expected["reason"] = reason
    assert notice["payload"] == expected
    assert isinstance(notice["timestamp"], int)
    return notice


# --- register -------------------------------------------------------------


def test_register_ack_carries_node_id_name_and_capabilities(gateway: GatewayProcess, nodes: NodePool) -> None:
    node = nodes()
    reply = node.register(
        "coder", capabilities=["code", "review"], agentName="coder-agent", sessionId="s-1",
        metadata={"model": "x"},
    )
    assert reply["type"] == "ack" and reply["messageId"] == "m1"
    payload = reply["payload"]
    assert NODE_ID.match(payload["nodeId"])
    assert payload["name"] == "coder"
    assert payload["capabilities"] == ["code", "review"]
    assert payload["action"] == "register"
    assert payload["gateway"] == socket.gethostname()
    assert health(gateway)["stats"]["totalNodes"] == 1


def test_registering_twice_is_refused_and_leaves_one_node(gateway: GatewayProcess, nodes: NodePool) -> None:
    node = nodes("first", room="lobby")
    other = nodes("other", room="lobby")
    reply = node.register("second")
    expect_error(
        reply, "ALREADY_REGISTERED", f"this connection is already registered as node {node.node_id}"
    )
    assert reply["messageId"] == "m3"
    assert health(gateway)["stats"]["totalNodes"] == 2
    assert_usable(node)
    got = assert_delivers(node, other, "lobby")
    assert got["fromName"] == "first"


# --- join_group -------------------------------------------------------------


def test_join_by_name_creates_and_join_by_id_adds_member(nodes: NodePool) -> None:
    a = nodes("alpha", capabilities=["plan"])
    b = nodes("beta")
    created = a.request(
        "join_group", {"groupName": "project", "createIfNotExists": True, "description": "the project"}
    )
    assert created["type"] == "ack"
    room_id = created["payload"]["groupId"]
    assert NODE_ID.match(room_id)
    assert created["payload"] == {
        "groupId": room_id, "groupName": "project", "created": True, "description": "the project",
        "strategy": "parallel", "members": [described(a, "alpha", ["plan"])], "action": "join_group",
        "offset": 0, "epoch": created["payload"]["epoch"],
    }
    joined = b.request("join_group", {"groupId": room_id})
    assert joined["payload"]["created"] is False
    assert joined["payload"]["groupName"] == "project"
    assert joined["payload"]["members"] == [described(a, "alpha", ["plan"]), described(b, "beta")]
    notice = expect_presence(a, b, "beta", "joined", room_id, "project", 2)
    assert "reason" not in notice["payload"]
    # Joining by name without createIfNotExists finds the existing room.
    c = nodes("gamma")
    again = c.request("join_group", {"groupName": "project"})
    assert again["payload"]["created"] is False and again["payload"]["groupId"] == room_id
    assert len(again["payload"]["members"]) == 3
    expect_presence(a, c, "gamma", "joined", room_id, "project", 3)
    expect_presence(b, c, "gamma", "joined", room_id, "project", 3)
    # Joining a room one is already in changes nothing and tells no one.
    repeat = b.request("join_group", {"groupId": room_id})
    assert repeat["payload"]["created"] is False and len(repeat["payload"]["members"]) == 3
    expect_silence(a)
    expect_silence(c)


def test_join_missing_room_is_group_not_found(gateway: GatewayProcess, nodes: NodePool) -> None:
    a = nodes("a", room="here")
    b = nodes("b", room="here")
    expect_error(a.join("nowhere", create=False), "GROUP_NOT_FOUND", "no room 'nowhere'")
    expect_error(a.request("join_group", {"groupId": "0123456789abcdef"}), "GROUP_NOT_FOUND",
                 "no room '0123456789abcdef'")
    # createIfNotExists needs a name to create by.
    expect_error(
        a.request("join_group", {"groupId": "0123456789abcdef", "createIfNotExists": True}),
        "GROUP_NOT_FOUND", "no room '0123456789abcdef'",
    )
    assert health(gateway)["stats"]["totalGroups"] == 1
    assert_usable(a)
    assert_delivers(a, b, "here")


# --- leave_group ------------------------------------------------------------------


def test_leave_group_by_envelope_or_payload_and_not_a_member(nodes: NodePool) -> None:
    a = nodes("a", room="team")
    room_id = a.join("team")["payload"]["groupId"]
    b = nodes("b", room="team")
    c = nodes("c", room="team")
    expect_presence(a, b, "b", "joined", room_id, "team", 2)
    expect_presence(a, c, "c", "joined", room_id, "team", 3)
    expect_presence(b, c, "c", "joined", room_id, "team", 3)

    left = b.request("leave_group", groupId=room_id)
    assert left["type"] == "ack"
    assert left["payload"] == {"groupId": room_id, "groupName": "team", "action": "leave_group"}
    expect_presence(a, b, "b", "left", room_id, "team", 2, reason="left")
    expect_presence(c, b, "b", "left", room_id, "team", 2, reason="left")

    left = c.request("leave_group", {"groupName": "team"})
    assert left["payload"]["groupId"] == room_id
    expect_presence(a, c, "c", "left", room_id, "team", 1, reason="left")

    expect_error(b.request("leave_group", groupId=room_id), "NOT_A_MEMBER",
                 "you are not a member of room 'team'")
    expect_error(b.request("leave_group", {"groupName": "elsewhere"}), "GROUP_NOT_FOUND",
                 "no room 'elsewhere'")
    ack = a.request("broadcast", {"groupId": room_id, "message": "anyone?"})
    assert ack["payload"]["recipients"] == 0
    expect_silence(b)
    expect_silence(c)
    b.join("team")
    assert_delivers(a, b, "team")


# --- broadcast --------------------------------------------------------------------


def test_broadcast_by_id_and_by_name_reaches_others_but_not_sender(nodes: NodePool) -> None:
    a = nodes("sender", room="crowd")
    room_id = a.join("crowd")["payload"]["groupId"]
    b = nodes("b", room="crowd")
    c = nodes("c", room="crowd")
    outsider = nodes("outsider", room="elsewhere")
    a.recv_type("presence")
    a.recv_type("presence")
    b.recv_type("presence")

    ack = a.request("broadcast", {"groupId": room_id, "message": {"n": 1}})
    assert ack["type"] == "ack"
    epoch = ack["payload"]["epoch"]
    assert ack["payload"] == {"groupId": room_id, "groupName": "crowd", "recipients": 2,
                              "offset": 1, "epoch": epoch, "action": "broadcast"}
    for member in (b, c):
        got = member.recv_type("broadcast")
        assert set(got) == {"type", "nodeId", "fromNodeId", "fromName", "groupId", "groupName",
                            "offset", "epoch", "payload", "timestamp"}
        assert (got["offset"], got["epoch"]) == (1, epoch)
        assert (got["nodeId"], got["fromNodeId"], got["fromName"]) == (a.node_id, a.node_id, "sender")
        assert (got["groupId"], got["groupName"], got["payload"]) == (room_id, "crowd", {"n": 1})
        assert isinstance(got["timestamp"], int)

    # By name, without a messageId: delivered, and no ack comes back.
    a.send({"type": "broadcast", "payload": {"groupId": "crowd", "message": {"n": 2}}})
    for member in (b, c):
        got = member.recv_type("broadcast")
        assert (got["groupId"], got["payload"]) == (room_id, {"n": 2})
    # groupName in the payload and groupId on the envelope work too.
    a.send({"type": "broadcast", "payload": {"groupName": "crowd", "message": 3}})
    a.send({"type": "broadcast", "groupId": room_id, "payload": {"message": 4}})
    for member in (b, c):
        assert member.recv_type("broadcast")["payload"] == 3
        assert member.recv_type("broadcast")["payload"] == 4
    expect_silence(a)
    expect_silence(outsider)


def test_broadcast_from_non_member_is_refused(nodes: NodePool) -> None:
    a = nodes("a", room="club")
    b = nodes("b", room="club")
    intruder = nodes("intruder", room="other")
    a.recv_type("presence")
    reply = intruder.request("broadcast", {"groupId": "club", "message": "hi"})
    expect_error(reply, "NOT_A_MEMBER", "you are not a member of room 'club'")
    expect_silence(a)
    expect_silence(b)
    assert_usable(intruder)
    assert_delivers(b, a, "club")


# --- direct -------------------------------------------------------------------------


def test_direct_reaches_only_its_target(nodes: NodePool) -> None:
    a = nodes("a")
    b = nodes("b")
    c = nodes("c")
    ack = a.request("direct", {"targetNodeId": b.node_id, "message": {"ask": "review"}})
    assert ack["payload"] == {"targetNodeId": b.node_id, "delivered": True, "action": "direct"}
    got = b.recv()
    assert got == {
        "type": "direct", "nodeId": a.node_id, "fromNodeId": a.node_id, "fromName": "a",
        "targetNodeId": b.node_id, "payload": {"ask": "review"}, "timestamp": got["timestamp"],
    }
    assert isinstance(got["timestamp"], int)
    # The target may also be named on the envelope; no messageId means no ack.
    b.send({"type": "direct", "targetNodeId": a.node_id, "payload": {"message": "thanks"}})
    back = a.recv()
    assert (back["type"], back["fromNodeId"], back["payload"]) == ("direct", b.node_id, "thanks")
    expect_silence(b)
    expect_silence(c)


def test_direct_to_unknown_node_is_node_not_found(nodes: NodePool) -> None:
    a = nodes("a", room="pair")
    b = nodes("b", room="pair")
    reply = a.request("direct", {"targetNodeId": "ffffffffffffffff", "message": 1})
    expect_error(reply, "NODE_NOT_FOUND", "no node 'ffffffffffffffff'")
    assert_usable(a)
    assert_delivers(a, b, "pair")


# --- ping, unregister, messageId ----------------------------------------------------


def test_ping_gets_pong_before_registering(nodes: NodePool) -> None:
    node = nodes()
    node.send({"type": "ping", "messageId": "p"})
    pong = node.recv()
    assert set(pong) == {"type", "messageId", "timestamp"}
    assert (pong["type"], pong["messageId"]) == ("pong", "p")
    node.send({"type": "ping"})
    pong = node.recv()
    assert set(pong) == {"type", "timestamp"} and pong["type"] == "pong"
    assert node.register("late")["type"] == "ack"


def test_unregister_acks_then_closes_normally(gateway: GatewayProcess, nodes: NodePool) -> None:
    a = nodes("a", room="room")
    room_id = a.join("room")["payload"]["groupId"]
    b = nodes("leaver", room="room")
    a.recv_type("presence")
    reply = b.request("unregister")
    assert reply["type"] == "ack"
    assert reply["payload"] == {"nodeId": b.node_id, "action": "unregister"}
    assert expect_closed(b) == (1000, "unregistered")
    expect_presence(a, b, "leaver", "left", room_id, "room", 1, reason="unregistered")
    wait_totals(gateway, 1, 1)
    assert_usable(a)


@pytest.mark.parametrize("message_id", ["req-42", 7, 0, 2**53 + 1])
def test_message_id_is_echoed_on_acks_and_errors(nodes: NodePool, message_id: str | int) -> None:
    node = nodes()
    node.send({"type": "join_group", "messageId": message_id, "payload": {"groupName": "x"}})
    expect_error(reply_to(node, message_id), "NOT_REGISTERED")
    node.send({"type": "register", "messageId": message_id, "payload": {"name": "n"}})
    assert reply_to(node, message_id)["type"] == "ack"
    node.send({"type": "join_group", "messageId": message_id,
               "payload": {"groupName": "x", "createIfNotExists": True}})
    assert reply_to(node, message_id)["type"] == "ack"
    node.send({"type": "broadcast", "messageId": message_id, "payload": {"groupId": "x", "message": 1}})
    assert reply_to(node, message_id)["payload"]["recipients"] == 0
    node.send({"type": "no_such_type", "messageId": message_id})
    expect_error(reply_to(node, message_id), "UNKNOWN_MESSAGE_TYPE")
    node.send({"type": "ping", "messageId": message_id})
    assert reply_to(node, message_id)["type"] == "pong"


def test_requests_before_register_are_not_registered(gateway: GatewayProcess, nodes: NodePool) -> None:
    member = nodes("member", room="open")
    other = nodes("other", room="open")
    member.recv_type("presence")
    fresh = nodes()
    for kind, payload in (
        ("join_group", {"groupName": "open"}),
        ("leave_group", {"groupName": "open"}),
        ("broadcast", {"groupId": "open", "message": "x"}),
        ("direct", {"targetNodeId": member.node_id, "message": "x"}),
        ("unregister", None),
    ):
        reply = fresh.request(kind, payload)
        expect_error(reply, "NOT_REGISTERED", "register before sending this message")
    expect_silence(member)
    assert health(gateway)["stats"]["totalNodes"] == 2
    assert fresh.register("now")["type"] == "ack"
    assert fresh.join("open")["payload"]["created"] is False
    assert_delivers(fresh, member, "open")
    assert other.recv_type("broadcast")["fromName"] == "now"
    assert_delivers(member, fresh, "open")


# --- room lifetime and disconnects ----------------------------------------------


def test_room_vanishes_when_its_last_member_leaves(gateway: GatewayProcess, nodes: NodePool) -> None:
    a = nodes("a")
    b = nodes("b")
    room_id = a.join("brief")["payload"]["groupId"]
    b.join("brief")
    assert health(gateway)["stats"]["totalGroups"] == 1
    a.request("leave_group", groupId=room_id)
    assert health(gateway)["stats"]["totalGroups"] == 1
    b.request("leave_group", groupId=room_id)
    assert health(gateway)["stats"]["totalGroups"] == 0
    expect_error(a.request("join_group", {"groupId": room_id}), "GROUP_NOT_FOUND",
                 f"no room {room_id!r}")
    expect_error(a.join("brief", create=False), "GROUP_NOT_FOUND", "no room 'brief'")
    again = a.join("brief")
    assert again["payload"]["created"] is True and again["payload"]["groupId"] != room_id


def test_abrupt_disconnect_leaves_every_room_at_once(gateway: GatewayProcess, nodes: NodePool) -> None:
    a = nodes("a")
    b = nodes("b")
    goner = nodes("goner")
    one = a.join("one")["payload"]["groupId"]
    two = b.join("two")["payload"]["groupId"]
    a.join("two")
    b.recv_type("presence")
    for room in ("one", "two", "solo"):
        goner.join(room)
    for node, room_id, room, count in ((a, one, "one", 2), (a, two, "two", 3), (b, two, "two", 3)):
        expect_presence(node, goner, "goner", "joined", room_id, room, count)
    stats = health(gateway)["stats"]
    assert (stats["totalNodes"], stats["totalGroups"]) == (3, 3)

    abort(goner)
    left_a = [a.recv_type("presence"), a.recv_type("presence")]
    left_b = b.recv_type("presence")
    for notice in [*left_a, left_b]:
        assert notice["type"] == "presence" and notice["payload"]["event"] == "left"
        assert notice["payload"]["reason"].startswith("connection was closed uncleanly")
        assert notice["nodeId"] == goner.node_id
    assert {n["groupId"] for n in left_a} == {one, two}
    assert left_b["groupId"] == two and left_b["payload"]["memberCount"] == 2

    wait_totals(gateway, 2, 2)
    status, _, body = http_get(gateway, "/stats")
    assert status == 200
    stats = json.loads(body)
    assert {n["id"] for n in stats["nodes"]["nodes"]} == {a.node_id, b.node_id}
    counts = {g["name"]: g["memberCount"] for g in stats["groups"]["groups"]}
    assert counts == {"one": 1, "two": 2}
    assert_delivers(a, b, "two")


def test_clean_close_tells_others_it_closed(gateway: GatewayProcess, nodes: NodePool) -> None:
    a = nodes("a")
    room_id = a.join("calm")["payload"]["groupId"]
    b = nodes("b", room="calm")
    a.recv_type("presence")
    b.close()
    expect_presence(a, b, "b", "left", room_id, "calm", 1, reason="closed")
    wait_totals(gateway, 1, 1)
