"""Random sequences of joins, leaves, creations and disconnects keep the Router's maps in agreement."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule

from harness.invariants import problems
from harness.memory import Harness, MemoryConnection
from wingman_gateway.limits import Limits
from wingman_gateway.state import Node

ROOMS = ("alpha", "beta", "gamma")
NAMES = st.sampled_from(ROOMS)


class Fragile(MemoryConnection):
    """A connection that, once armed, is cut off by the next thing sent to it (a slow consumer)."""

    def __init__(self, peer: str, harness: Harness) -> None:
        super().__init__(peer)
        self.harness = harness
        self.node: Node | None = None
        self.armed = False

    def send(self, message: Any) -> None:
        super().send(message)
        if self.armed and self.node is not None:
            self.armed = False
            self.harness.router.disconnect(self.node, "slow consumer")


class Rooms(RuleBasedStateMachine):
    nodes = Bundle("nodes")

    @initialize()
    def start(self) -> None:
        self.h = Harness(Limits(max_nodes=6, max_rooms=2, max_rooms_per_node=2))
        self.count = 0

    @rule(target=nodes)
    def connect(self) -> tuple[Node, Fragile]:
        self.count += 1
        conn = Fragile(f"tcp:10.0.0.{self.count}:1", self.h)
        node = self.h.router.connect(conn)
        conn.node = node
        return node, conn

    @rule(pair=nodes, name=st.sampled_from(("a", "b", "a")))
    def register(self, pair: tuple[Node, Fragile], name: str) -> None:
        self.h.send(pair[0], {"type": "register", "payload": {"name": name}})

    @rule(pair=nodes, name=NAMES, create=st.booleans(),
          how=st.sampled_from(("name", "id", "both", "mismatch", "name-as-id", "unknown-id")))
    def join(self, pair: tuple[Node, Fragile], name: str, create: bool, how: str) -> None:
        node, conn = pair
        room = self.h.router.rooms.find_by_name(name)
        other = next((r for r in self.h.router.rooms.rooms() if r.name != name), None)
        payload: dict[str, Any] = {"createIfNotExists": create}
        if how == "name":
            payload["groupName"] = name
        elif how == "id":
            payload["groupId"] = room.id if room else "0123456789abcdef"
        elif how == "both":
            payload.update(groupName=name, groupId=room.id if room else "0123456789abcdef")
        elif how == "mismatch":
            payload.update(groupName=name, groupId=other.id if other else name)
        elif how == "name-as-id":
            payload["groupId"] = name
        else:
            payload.update(groupName=name, groupId="fedcba9876543210")
        before = len(room.members) if room else 0
        was_member = room is not None and node.node_id in room.members
        fragile = room is not None and any(m.conn.armed for m in room.members.values())  # type: ignore[attr-defined]
        conn.take()
        self.h.send(node, {"type": "join_group", "payload": payload, "messageId": "j"})
        replies = [m for m in conn.take() if m.get("messageId") == "j"]
        if not replies:
            return  # the node was closed meanwhile (a fatal refusal, a cut-off)
        [reply] = replies
        if how == "mismatch" and other is not None and node.node_id is not None:
            assert reply["payload"]["code"] == "INVALID_REQUEST", reply
        if reply["type"] == "ack" and not node.closed:
            joined = self.h.router.rooms.find(reply["payload"]["groupId"])
            assert joined is not None and joined.name == name
            assert reply["payload"]["created"] == (room is None)
            if not was_member and joined is room and not fragile:
                assert len(joined.members) == before + 1

    @rule(pair=nodes, name=NAMES)
    def leave(self, pair: tuple[Node, Fragile], name: str) -> None:
        self.h.send(pair[0], {"type": "leave_group", "payload": {"groupName": name}})

    @rule(pair=nodes, name=NAMES)
    def broadcast(self, pair: tuple[Node, Fragile], name: str) -> None:
        self.h.send(pair[0], {"type": "broadcast", "payload": {"groupName": name, "message": 1}})

    @rule(pair=nodes, to=nodes)
    def direct(self, pair: tuple[Node, Fragile], to: tuple[Node, Fragile]) -> None:
        self.h.send(pair[0], {"type": "direct", "payload": {"targetNodeId": to[0].node_id or "x",
                                                            "message": 1}})

    @rule(pair=nodes)
    def arm(self, pair: tuple[Node, Fragile]) -> None:
        pair[1].armed = True

    @rule(pair=nodes)
    def disconnect(self, pair: tuple[Node, Fragile]) -> None:
        self.h.router.disconnect(pair[0], "connection lost")
        self.h.clock.advance(0)

    @rule(pair=nodes)
    def unregister(self, pair: tuple[Node, Fragile]) -> None:
        self.h.send(pair[0], {"type": "unregister"})

    @rule(pair=nodes)
    def heartbeat(self, pair: tuple[Node, Fragile]) -> None:
        self.h.clock.advance(61)
        self.h.send(pair[0], {"type": "ping"})
        self.h.router.drop_silent()
        self.h.clock.advance(0)

    @invariant()
    def maps_agree(self) -> None:
        if hasattr(self, "h"):
            assert problems(self.h.router) == []

    @invariant()
    def presence_counts_are_right(self) -> None:
        """The last notice each member got for a room names the room's member count."""
        if not hasattr(self, "h"):
            return
        for room in self.h.router.rooms.rooms():
            for member in room.members.values():
                last = _last_presence(member.conn, room.id)  # type: ignore[arg-type]
                if last is not None:
                    assert last["memberCount"] == len(room.members), (last, room)


def _last_presence(conn: MemoryConnection, room_id: str) -> dict[str, Any] | None:
    for message in reversed(conn.sent):
        if message["type"] == "ack" and message["payload"].get("groupId") == room_id and (
            message["payload"]["action"] == "join_group"
        ):
            return {"memberCount": len(message["payload"]["members"])}
        if message["type"] == "presence" and message["groupId"] == room_id:
            events = message["payload"].get("events")
            return events[-1] if events else message["payload"]
    return None


TestRooms = Rooms.TestCase
