"""Room history and idempotency keys, on a Clock: caps, TTL, epochs, bad input."""

from __future__ import annotations

from typing import Any

import pytest

from harness.memory import Harness, MemoryConnection
from wingman_gateway import errors
from wingman_gateway.history import ENTRY_OVERHEAD, HistorySettings, MemoryHistory, Position
from wingman_gateway.idempotency import SentKeys
from wingman_gateway.limits import Limits
from wingman_gateway.state import Node

TEXT = "x" * 100


def rig(**settings: Any) -> Harness:
    return Harness(Limits(message_rate=0), history=HistorySettings(**settings))


def say(h: Harness, node: Node, room: str, count: int, text: str = TEXT) -> None:
    for _ in range(count):
        h.send(node, {"type": "broadcast", "payload": {"groupName": room, "message": text}})


def resume(h: Harness, room: str, offset: int, epoch: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A new node joins ``room`` from ``offset``; the ack and what it was sent after it."""
    node, conn = h.node("back")
    h.send(node, {"type": "join_group", "payload": {"groupName": room, "createIfNotExists": True, "since": {"offset": offset, "epoch": epoch}}})
    ack, *rest = conn.take()
    return ack["payload"], rest


def opened(h: Harness, room: str) -> tuple[Node, MemoryConnection, str]:
    """A speaker in a new ``room`` (kept open by a silent member) and the room's epoch."""
    h.node("keeper", room)
    node, conn = h.node("speaker", room)
    epoch = h.router.rooms.history.recover(h.router.rooms.find_by_name(room).id, None).position.epoch
    return node, conn, epoch


def test_the_history_size_bounds_what_can_be_resumed() -> None:
    h = rig(size=5)
    speaker, _, epoch = opened(h, "room")
    say(h, speaker, "room", 8)
    ack, missed = resume(h, "room", 3, epoch)  # 4..8 kept: from 3 on is whole
    assert ack["recovered"] is True and [m["offset"] for m in missed] == [4, 5, 6, 7, 8]
    ack, missed = resume(h, "room", 2, epoch)  # 3 is gone
    assert (ack["recovered"], ack["reason"], missed) == (False, "too old", [])
    ack, missed = resume(h, "room", 8, epoch)
    assert ack["recovered"] is True and missed == []


def test_the_per_room_byte_cap_bounds_a_room() -> None:
    h = rig(size=1000, room_bytes=4096)
    speaker, _, epoch = opened(h, "room")
    say(h, speaker, "room", 100)
    history = h.router.rooms.history
    assert 0 < history.bytes <= 4096
    kept = history.bytes // (len(history._all) or 1)
    ack, missed = resume(h, "room", 100 - 4096 // kept, epoch)
    assert ack["recovered"] is True and missed[-1]["offset"] == 100
    ack, _ = resume(h, "room", 100 - 4096 // kept - 2, epoch)
    assert ack["reason"] == "too old"


def test_a_message_larger_than_the_room_cap_is_not_kept_and_ends_what_was_before() -> None:
    h = rig(room_bytes=2048)
    speaker, _, epoch = opened(h, "room")
    say(h, speaker, "room", 2)
    say(h, speaker, "room", 1, "y" * 4000)
    say(h, speaker, "room", 1)
    assert resume(h, "room", 2, epoch)[0]["reason"] == "too old"
    ack, missed = resume(h, "room", 3, epoch)
    assert ack["recovered"] is True and [m["offset"] for m in missed] == [4]


def test_the_gateway_wide_byte_cap_drops_the_oldest_messages_of_any_room() -> None:
    h = rig(size=1000, total_bytes=8192)
    old, _, old_epoch = opened(h, "old")
    new, _, new_epoch = opened(h, "new")
    say(h, old, "old", 10)
    say(h, new, "new", 200)
    assert h.router.rooms.history.bytes <= 8192
    assert resume(h, "old", 0, old_epoch)[0]["reason"] == "too old"
    assert resume(h, "old", 10, old_epoch)[0]["recovered"] is True  # nothing missed
    ack, missed = resume(h, "new", 195, new_epoch)
    assert ack["recovered"] is True and [m["offset"] for m in missed] == [196, 197, 198, 199, 200]


def test_messages_older_than_the_ttl_are_forgotten() -> None:
    h = rig(ttl=10.0)
    speaker, _, epoch = opened(h, "room")
    say(h, speaker, "room", 3)
    h.clock.advance(6)
    say(h, speaker, "room", 3)
    ack, missed = resume(h, "room", 0, epoch)
    assert ack["recovered"] is True and len(missed) == 6
    h.clock.advance(5)  # the first three are 11 s old
    assert resume(h, "room", 0, epoch)[0]["reason"] == "too old"
    ack, missed = resume(h, "room", 3, epoch)
    assert ack["recovered"] is True and [m["offset"] for m in missed] == [4, 5, 6]
    h.clock.advance(20)
    assert resume(h, "room", 3, epoch)[0]["reason"] == "too old"
    assert h.router.rooms.history.bytes == 0


def test_a_recreated_room_has_a_new_epoch_and_offsets_start_again() -> None:
    h = rig()
    node, conn = h.node("alone", "room")
    first = h.router.rooms.history.recover(h.router.rooms.find_by_name("room").id, None).position
    h.router.disconnect(node)
    assert h.router.rooms.history.bytes == 0 and h.router.rooms.history.report()["rooms"] == 0
    ack, _ = resume(h, "room", 0, first.epoch)
    assert (ack["recovered"], ack["reason"], ack["offset"]) == (False, "other epoch", 0)


def test_without_history_broadcasts_carry_no_position_and_since_says_so() -> None:
    h = rig(size=0)
    speaker, _ = h.node("speaker", "room")
    listener, conn = h.node("listener", "room")
    say(h, speaker, "room", 1)
    [delivered] = conn.take()
    assert "offset" not in delivered and "epoch" not in delivered
    ack, missed = resume(h, "room", 1, "e")
    assert (ack["recovered"], ack["reason"], missed) == (False, "history off", [])
    assert "offset" not in ack and "epoch" not in ack


def test_an_offset_beyond_the_room_is_unknown() -> None:
    h = rig()
    _, _, epoch = opened(h, "room")
    assert resume(h, "room", 5, epoch)[0]["reason"] == "unknown offset"


@pytest.mark.parametrize(
    "since",
    [[], "1", {"offset": -1, "epoch": "e"}, {"offset": True, "epoch": "e"}, {"offset": 1},
     {"offset": 1, "epoch": ""}, {"offset": 1, "epoch": "e" * 101}, {"offset": 1.5, "epoch": "e"}],
)
def test_a_bad_since_is_refused_and_the_node_stays_usable(since: Any) -> None:
    h = rig()
    node, conn = h.node("node")
    reply = h.request(node, conn, "join_group", {"groupName": "room", "createIfNotExists": True, "since": since})
    assert reply["payload"]["code"] == errors.INVALID_REQUEST and "since" in reply["payload"]["message"]
    assert h.request(node, conn, "join_group", {"groupName": "room", "createIfNotExists": True})["type"] == "ack"


def test_memory_history_counts_every_kept_message_with_its_overhead() -> None:
    h = rig()
    history = MemoryHistory(h.clock, HistorySettings())
    history.open("r")
    data, position = history.append("r", lambda p: b"abc")
    assert position == Position(1, position.epoch) and history.bytes == 3 + ENTRY_OVERHEAD
    history.close("r")
    assert history.bytes == 0 and history.report() == {"rooms": 0, "messages": 0, "bytes": 0}


# -- idempotency keys ------------------------------------------------------------


def test_a_repeated_direct_is_not_delivered_again() -> None:
    h = rig()
    sender, sconn = h.node("sender")
    target, tconn = h.node("target")
    envelope = {"idempotencyKey": "k", "payload": {"targetNodeId": target.node_id, "message": 1}}
    first = h.request(sender, sconn, "direct", **envelope, messageId=1)
    again = h.request(sender, sconn, "direct", **envelope, messageId=2)
    assert first["payload"] == {"targetNodeId": target.node_id, "delivered": True, "action": "direct"}
    assert again["messageId"] == 2 and again["payload"]["duplicate"] is True
    assert [e["payload"] for e in tconn.take()] == [1]


def test_keys_are_scoped_by_room_and_forgotten_after_the_window() -> None:
    h = rig()
    sender, sconn = h.node("sender", "a", "b")
    listener, lconn = h.node("listener", "a", "b")
    for room in ("a", "b", "a"):
        h.send(sender, {"type": "broadcast", "idempotencyKey": "k", "payload": {"groupName": room, "message": room}})
    assert [e["payload"] for e in lconn.take()] == ["a", "b"]
    h.clock.advance(h.router.sent_keys.window + 1)
    h.send(sender, {"type": "broadcast", "idempotencyKey": "k", "payload": {"groupName": "a", "message": "later"}})
    assert [e["payload"] for e in lconn.take()] == ["later"]


def test_idempotency_keys_are_bounded_in_number() -> None:
    keys = SentKeys(Harness().clock, capacity=3)
    for n in range(5):
        keys.remember(("room", "r", str(n)), {"recipients": n})
    assert len(keys) == 3 and keys.outcome(("room", "r", "0")) is None
    assert keys.outcome(("room", "r", "4")) == {"recipients": 4}


@pytest.mark.parametrize("key", [1, "", "k" * 201, {"k": 1}])
def test_a_bad_idempotency_key_is_refused(key: Any) -> None:
    h = rig()
    node, conn = h.node("node", "room")
    reply = h.request(node, conn, "broadcast", {"groupName": "room", "message": 1}, idempotencyKey=key, messageId=1)
    assert reply["payload"]["code"] == errors.INVALID_REQUEST and "idempotencyKey" in reply["payload"]["message"]
    assert h.request(node, conn, "ping")["type"] == "pong"
