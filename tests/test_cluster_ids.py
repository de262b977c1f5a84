"""Node ids are unique across a cluster: an id the random source offers
again, whether a node on another gateway or on this one holds it, is
passed over for another (the Router on ``ClusterRooms``, in memory)."""

from __future__ import annotations

import secrets

import pytest

from harness.memory import Harness
from wingman_gateway.cluster import rooms as cluster_rooms
from wingman_gateway.cluster import wire
from wingman_gateway.cluster.rooms import ClusterRooms

REMOTE_ID = "b0b0b0b0b0b0b0b0"
FRESH_ID = "c0ffeec0ffeec0ff"


def test_an_id_held_on_this_or_another_gateway_is_never_given_again(monkeypatch: pytest.MonkeyPatch) -> None:
    harness = Harness(rooms=lambda clock: ClusterRooms(clock, "gateway-a", wire.Names(0)))
    rooms = harness.router.rooms
    assert isinstance(rooms, ClusterRooms)
    # A node another gateway holds, as its directory entry announces it.
    rooms.apply(rooms.peer("gateway-b"), REMOTE_ID, {"name": "far", "transport": "websocket"}, "left")
    near, _ = harness.node("near")
    assert near.node_id not in (None, REMOTE_ID)
    # The id source offers both taken ids before a free one.
    offered = [REMOTE_ID, near.node_id, FRESH_ID]
    real = secrets.token_hex
    monkeypatch.setattr(cluster_rooms.secrets, "token_hex", lambda size: offered.pop(0) if offered else real(size))
    session, conn = harness.connect()
    reply = harness.request(session, conn, "register", {"name": "newcomer"})
    assert reply["type"] == "ack" and reply["payload"]["nodeId"] == FRESH_ID, reply
    assert offered == []  # every taken id was offered, and passed over
    # Both earlier holders keep their ids, and each id names one node.
    far = rooms.node(REMOTE_ID)
    assert far is not None and far.name == "far"
    assert rooms.node(near.node_id or "") is near and rooms.node(FRESH_ID) is session
