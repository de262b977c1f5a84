"""Protocol v1 over every transport, in memory: one suite, parametrized.

Each test runs once per transport (``memory``, ``websocket``, ``http`` (the bridge),
``ssh``; see ``harness.wire``) through the transport's real protocol code,
with a Router on a Clock: no process, no socket, no waiting. The node
under test talks to peers on other transports, so what one sends is
checked as another receives it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from harness.wire import TRANSPORTS, Client, Rig
from wingman_gateway import errors
from wingman_gateway.history import HistorySettings
from wingman_gateway.limits import Limits


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    yield Rig(tmp_path, limits=Limits(message_rate=0))


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def registered(rig: Rig, transport: str, name: str, *rooms: str) -> Client:
    client = rig.client(transport)
    reply = client.request("register", {"name": name}, messageId="r")
    assert reply["type"] == "ack", reply
    for room in rooms:
        reply = client.request("join_group", {"groupName": room, "createIfNotExists": True})
        assert reply["type"] == "ack", reply
    client.take()
    return client


def code(reply: dict[str, Any]) -> str:
    assert reply["type"] == "error", reply
    return str(reply["payload"]["code"])


def test_register_is_acked_with_the_node_id_and_limits(rig: Rig, transport: str) -> None:
    client = rig.client(transport)
    reply = client.request("register", {"name": "alice", "capabilities": ["chat"]}, messageId=7)
    assert reply["type"] == "ack" and reply["messageId"] == 7
    payload = reply["payload"]
    assert payload["action"] == "register" and payload["name"] == "alice"
    assert rig.router.rooms.node(payload["nodeId"]).conn.transport_name == transport
    assert set(payload["limits"]) >= {"maxPayload"} and set(payload["heartbeat"]) == {
        "pingInterval", "pingTimeout",
    }


def test_ping_is_answered_before_registering(rig: Rig, transport: str) -> None:
    reply = rig.client(transport).request("ping", messageId="p")
    assert reply["type"] == "pong" and reply["messageId"] == "p"


def test_requests_before_registering_are_refused(rig: Rig, transport: str) -> None:
    client = rig.client(transport)
    reply = client.request("join_group", {"groupName": "room"}, messageId=1)
    assert code(reply) == errors.NOT_REGISTERED and reply["messageId"] == 1


def test_broadcast_reaches_members_on_every_other_transport_untouched(rig: Rig, transport: str) -> None:
    sender = registered(rig, transport, "sender", "room")
    peers = [registered(rig, other, f"peer-{other}", "room") for other in TRANSPORTS]
    sender.take()  # presence of the peers joining
    message = '{"type":"agent-stream","delta":"1.50","n":1e3}'
    sender.send('{"type":"broadcast","messageId":"b","payload":{"groupName":"room","message":%s}}' % message)
    ack = [e for e in sender.take() if e["type"] == "ack"]
    assert ack[0]["payload"]["recipients"] == len(peers)
    for peer in peers:
        got = [e for e in peer.take() if e["type"] == "broadcast"]
        assert len(got) == 1, (peer.transport, got)
        assert got[0]["payload"] == {"type": "agent-stream", "delta": "1.50", "n": 1000.0}
        assert got[0]["fromName"] == "sender" and got[0]["groupName"] == "room"


def test_a_peer_on_this_transport_receives_in_order(rig: Rig, transport: str) -> None:
    receiver = registered(rig, transport, "receiver", "room")
    sender = registered(rig, "memory", "sender", "room")
    for n in range(20):
        sender.send({"type": "broadcast", "payload": {"groupName": "room", "message": {"n": n}}})
    got = [e["payload"]["n"] for e in receiver.take() if e["type"] == "broadcast"]
    assert got == list(range(20))


def test_direct_reaches_only_its_target(rig: Rig, transport: str) -> None:
    sender = registered(rig, transport, "sender", "room")
    target = registered(rig, "memory", "target", "room")
    bystander = registered(rig, "memory", "bystander", "room")
    target_id = rig.router.rooms.find_by_name("room").recipients[1].node_id
    reply = sender.request("direct", {"targetNodeId": target_id, "message": "hi"}, messageId=3)
    assert reply["payload"] == {"targetNodeId": target_id, "delivered": True, "action": "direct"}
    assert [e["payload"] for e in target.take() if e["type"] == "direct"] == ["hi"]
    assert [e for e in bystander.take() if e["type"] == "direct"] == []
    missing = sender.request("direct", {"targetNodeId": "nobody", "message": "x"}, messageId=4)
    assert code(missing) == errors.NODE_NOT_FOUND


def test_presence_tells_members_who_joins_and_leaves(rig: Rig, transport: str) -> None:
    watcher = registered(rig, "memory", "watcher", "room")
    node = registered(rig, transport, "node", "room")
    joined = [e for e in watcher.take() if e["type"] == "presence"]
    assert [e["payload"]["event"] for e in joined] == ["joined"]
    assert joined[0]["payload"]["name"] == "node" and joined[0]["payload"]["memberCount"] == 2
    reply = node.request("leave_group", {"groupName": "room"})
    assert reply["type"] == "ack"
    left = [e for e in watcher.take() if e["type"] == "presence"]
    assert [(e["payload"]["event"], e["payload"]["reason"]) for e in left] == [("left", "left")]


def test_malformed_input_gets_the_exact_error_and_the_connection_stays_usable(
    rig: Rig, transport: str
) -> None:
    client = registered(rig, transport, "alice", "room")
    cases = [
        ("{not json", errors.INVALID_MESSAGE),
        ('{"type":"teleport","messageId":5}', errors.UNKNOWN_MESSAGE_TYPE),
        ('{"type":"join_group","payload":{}}', errors.INVALID_REQUEST),
        ('{"type":"leave_group","payload":{"groupName":"nowhere"}}', errors.GROUP_NOT_FOUND),
        ('{"type":"broadcast","payload":{"groupName":"room"}}', errors.INVALID_REQUEST),
        ('{"type":"register","payload":{"name":"again"}}', errors.ALREADY_REGISTERED),
    ]
    for text, expected in cases:
        client.send(text)
        replies = [e for e in client.take() if e["type"] in ("ack", "error")]
        assert [code(r) for r in replies] == [expected], text
    assert client.request("ping")["type"] == "pong"


def test_not_a_member_cannot_broadcast(rig: Rig, transport: str) -> None:
    registered(rig, "memory", "owner", "private")
    client = registered(rig, transport, "outsider")
    reply = client.request("broadcast", {"groupName": "private", "message": 1}, messageId=9)
    assert code(reply) == errors.NOT_A_MEMBER


def test_unregister_acks_closes_and_members_see_it(rig: Rig, transport: str) -> None:
    watcher = registered(rig, "memory", "watcher", "room")
    client = registered(rig, transport, "leaver", "room")
    watcher.take()
    reply = client.request("unregister", messageId="u")
    assert reply["type"] == "ack" and reply["payload"]["action"] == "unregister"
    assert client.closed
    left = [e["payload"] for e in watcher.take() if e["type"] == "presence"]
    assert [(p["event"], p["reason"]) for p in left] == [("left", "unregistered")]
    assert rig.router.rooms.node_count() == 1


def test_an_oversized_message_is_refused_and_the_connection_stays_usable(
    tmp_path: Path, transport: str
) -> None:
    rig = Rig(tmp_path, limits=Limits(message_rate=0, max_payload=1024))
    client = registered(rig, transport, "alice", "room")
    client.send('{"type":"broadcast","payload":{"groupName":"room","message":"%s"}}' % ("x" * 2000))
    replies = [e for e in client.take() if e["type"] == "error"]
    assert [code(r) for r in replies] == [errors.PAYLOAD_TOO_LARGE]
    assert client.request("ping")["type"] == "pong"


# -- resuming after a reconnect (room history) and idempotent sends ---------


@pytest.fixture
def history_rig(tmp_path: Path) -> Iterator[Rig]:
    yield Rig(tmp_path, limits=Limits(message_rate=0), history=HistorySettings())


def joined(rig: Rig, transport: str, name: str, room: str, since: Any = None) -> tuple[Client, dict[str, Any]]:
    """A registered client in ``room`` (resuming from ``since``), and the join's ack."""
    client = registered(rig, transport, name)
    payload: dict[str, Any] = {"groupName": room, "createIfNotExists": True}
    if since is not None:
        payload["since"] = since
    client.send({"type": "join_group", "messageId": "j", "payload": payload})
    arrived = client.take()
    assert arrived[0]["type"] == "ack", arrived
    client.inbox_after_join = arrived[1:]  # type: ignore[attr-defined]
    return client, arrived[0]["payload"]


def broadcasts(envelopes: list[dict[str, Any]]) -> list[tuple[int, int]]:
    return [(e["payload"]["n"], e["offset"]) for e in envelopes if e["type"] == "broadcast"]


def test_a_node_that_reconnects_resumes_exactly_where_it_left_off(history_rig: Rig, transport: str) -> None:
    rig = history_rig
    sender, _ = joined(rig, "memory", "sender", "room")
    receiver, ack = joined(rig, transport, "receiver", "room")
    assert ack["offset"] == 0 and isinstance(ack["epoch"], str) and "recovered" not in ack

    def say(numbers: range) -> None:
        for n in numbers:
            sender.send({"type": "broadcast", "payload": {"groupName": "room", "message": {"n": n}}})

    say(range(0, 5))
    got = receiver.take()
    assert broadcasts(got) == [(n, n + 1) for n in range(5)]
    assert {e["epoch"] for e in got if e["type"] == "broadcast"} == {ack["epoch"]}
    last = {"offset": got[-1]["offset"], "epoch": got[-1]["epoch"]}
    receiver.drop()
    say(range(5, 9))  # said while the receiver is away
    again, resumed = joined(rig, transport, "receiver", "room", since=last)
    assert resumed["recovered"] is True and resumed["offset"] == 9 and "reason" not in resumed
    say(range(9, 12))  # live again
    got = again.inbox_after_join + again.take()  # type: ignore[attr-defined]
    assert broadcasts(got) == [(n, n + 1) for n in range(5, 12)]


def test_a_position_in_another_epoch_is_not_resumed(history_rig: Rig, transport: str) -> None:
    rig = history_rig
    first, ack = joined(rig, transport, "first", "room")
    first.drop()  # the room's last member: the room and its history are gone
    again, resumed = joined(rig, transport, "again", "room", since={"offset": 0, "epoch": ack["epoch"]})
    assert resumed["created"] is True and resumed["epoch"] != ack["epoch"]
    assert (resumed["recovered"], resumed["reason"]) == (False, "other epoch")


def test_a_retried_broadcast_after_a_reconnect_is_delivered_once(history_rig: Rig, transport: str) -> None:
    rig = history_rig
    listener, _ = joined(rig, "memory", "listener", "room")
    sender, _ = joined(rig, transport, "sender", "room")
    listener.take()
    envelope = {"type": "broadcast", "messageId": "first", "idempotencyKey": "turn-1/part-1",
                "payload": {"groupName": "room", "message": {"n": 1}}}
    sender.send(envelope)
    [ack] = [e for e in sender.take() if e["type"] == "ack"]
    sender.drop()
    retry, _ = joined(rig, transport, "sender", "room")
    retry.send({**envelope, "messageId": "retry"})
    [again] = [e for e in retry.take() if e["type"] == "ack"]
    assert again["messageId"] == "retry" and again["payload"]["duplicate"] is True
    assert again["payload"]["recipients"] == ack["payload"]["recipients"] == 1
    assert again["payload"]["offset"] == ack["payload"]["offset"]
    assert broadcasts(listener.take()) == [(1, ack["payload"]["offset"])]
