"""The rooms seam: where nodes and rooms live and how messages reach them.

The Router decides *whether* something may happen (validation, auth,
limits, rate limits); an ``IRooms`` provider keeps the node directory and
the room registry and does the fan-out. ``LocalRooms`` keeps them in this
process; a backplane shared by several gateways provides the same
interface, so the Router's request handlers never change with it.
Nothing here imports a transport.
"""

from __future__ import annotations

import secrets
from typing import Any, Iterable

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from zope.interface import Interface, implementer

from wingman_gateway.connection import Outbound
from wingman_gateway.envelope import Verbatim, encode, splice
from wingman_gateway.events import Events
from wingman_gateway.history import HistorySettings, IHistory, MemoryHistory, Position, Published, Recovery
from wingman_gateway.presence import Presence
from wingman_gateway.state import Node, Room


class IRooms(Interface):
    """The node directory, the room registry and fan-out."""

    def new_node_id() -> str:
        """An id no other node has."""

    def add_node(node: Node) -> None:
        """``node`` (with its id set) is registered and may be found."""

    def remove_node(node: Node, reason: str) -> None:
        """``node`` is gone: it leaves every room (members are told why)."""

    def node(node_id: str) -> Node | None:
        """The registered node with ``node_id``, or None."""

    def send_to(node_id: str, message: Outbound) -> bool:
        """Hand ``message`` to the node ``node_id``; False if there is none.

        May raise ``GatewayError`` when the node exists but cannot be
        reached now (a backplane that lost its connection).
        """

    def find(room: str) -> Room | None:
        """The room with this id, or else with this name."""

    def find_by_name(name: str) -> Room | None:
        """The room named ``name``, or None."""

    def create(name: str, description: str | None, strategy: str, created_by: str) -> Room:
        """A new, empty room; ``name`` must not be taken."""

    def join(room: Room, node: Node) -> bool:
        """``node`` joins ``room`` (members are told); False if it was a member."""

    def leave(room: Room, node: Node, reason: str) -> None:
        """``node`` leaves ``room``; an empty room is gone."""

    def publish(
        room: Room, head: dict[str, Any], payload: str, exclude: Node | None, key: str | None
    ) -> "defer.Deferred[Published]":
        """A broadcast: give it the room's next position (``offset`` and
        ``epoch`` added to ``head`` when history is on), keep it in the
        room's history, and deliver ``head`` with the verbatim JSON
        ``payload`` to every member but ``exclude``. Where the room's order
        is decided. A Deferred (already fired for ``LocalRooms``) of how
        many got it and the position; it never fails. ``key``, the send's
        idempotency key, lets a provider shared by several gateways refuse
        a repeat sent through another gateway (``Published.duplicate``)."""

    def recover(room: Room, node: Node, since: Position | None) -> "defer.Deferred[Recovery]":
        """The room's position and, with ``since``, what was published after
        it (encoded as delivered), or why that cannot be had; ``node`` has
        just joined. It gets nothing published later until the Deferred's
        callbacks (the join ack, the recovered messages) have run; it never
        fails."""

    def close(room: Room, reason: str) -> list[Node]:
        """Every member is told the room is closed and leaves it; the room is gone."""

    def members(room: Room) -> Verbatim:
        """Public descriptions of the room's members: a JSON array, as ``member_list`` makes it."""

    def node_count() -> int:
        """How many nodes are registered here (this gateway's load)."""

    def room_count() -> int:
        """How many rooms exist."""

    def nodes() -> Iterable[Node]:
        """Every registered node (for ``/stats``)."""

    def rooms() -> Iterable[Room]:
        """Every room (for ``/stats``)."""


@implementer(IRooms)
class LocalRooms:
    """Nodes and rooms of this gateway alone, in memory."""

    def __init__(
        self, clock: IReactorTime, history: IHistory | None = None, events: Events | None = None
    ) -> None:
        self.clock = clock
        self.history: IHistory = (
            history if history is not None else MemoryHistory(clock, HistorySettings(size=0))
        )
        self.events = events if events is not None else Events()
        self._nodes: dict[str, Node] = {}
        self._rooms: dict[str, Room] = {}
        self._by_name: dict[str, Room] = {}
        self.presence = Presence(clock, self._now_ms)

    def _now_ms(self) -> int:
        return int(self.clock.seconds() * 1000)

    # -- nodes ------------------------------------------------------------

    def new_node_id(self) -> str:
        node_id = secrets.token_hex(8)
        while node_id in self._nodes:
            node_id = secrets.token_hex(8)
        return node_id

    def add_node(self, node: Node) -> None:
        assert node.node_id is not None
        self._nodes[node.node_id] = node

    def remove_node(self, node: Node, reason: str) -> None:
        if node.node_id is not None and self._nodes.get(node.node_id) is node:
            del self._nodes[node.node_id]
        # Whatever the directory says, the node leaves every room it is in.
        for room in list(node.rooms.values()):
            self.leave(room, node, reason)

    def node(self, node_id: str) -> Node | None:
        return self._nodes.get(node_id)

    def send_to(self, node_id: str, message: Outbound) -> bool:
        target = self._nodes.get(node_id)
        if target is None:
            return False
        self.presence.flush_for(target)
        target.send(message)
        self.events.emit("delivered", {target.conn.transport_name: 1}, None, len(message.data))
        return True

    def node_count(self) -> int:
        return len(self._nodes)

    def nodes(self) -> Iterable[Node]:
        return list(self._nodes.values())

    # -- rooms ------------------------------------------------------------

    def find(self, room: str) -> Room | None:
        return self._rooms.get(room) or self._by_name.get(room)

    def find_by_name(self, name: str) -> Room | None:
        return self._by_name.get(name)

    def create(self, name: str, description: str | None, strategy: str, created_by: str) -> Room:
        if name in self._by_name:
            raise ValueError(f"a room named {name!r} exists")
        room_id = secrets.token_hex(8)
        while room_id in self._rooms:
            room_id = secrets.token_hex(8)
        room = Room(
            id=room_id,
            name=name,
            description=description,
            strategy=strategy,
            created_at=self._now_ms(),
            created_by=created_by,
        )
        self._rooms[room.id] = room
        self._by_name[room.name] = room
        self.history.open(room.id)
        return room

    def join(self, room: Room, node: Node) -> bool:
        if node.node_id in room.members:
            return False
        room.add(node)
        node.rooms[room.id] = room
        self.presence.event(room, node, "joined", None)
        return True

    def leave(self, room: Room, node: Node, reason: str) -> None:
        if node.node_id is None or room.members.get(node.node_id) is not node:
            node.rooms.pop(room.id, None)
            return
        room.remove(node)
        node.rooms.pop(room.id, None)
        if room.members:
            self.presence.event(room, node, "left", reason)
        elif self._rooms.get(room.id) is room:
            del self._rooms[room.id]
            if self._by_name.get(room.name) is room:
                del self._by_name[room.name]
            self.history.close(room.id)

    def deliver(self, room: Room, message: Outbound, exclude: Node | None) -> int:
        self.presence.flush(room.id)  # notices of this turn go first
        recipients, transports = room.recipients, room.transports
        for member in recipients:
            if member is not exclude:
                member.send(message)
        excluded = exclude is not None and exclude.node_id in room.members
        self.events.emit(
            "delivered", transports,
            exclude.conn.transport_name if exclude is not None and excluded else None,
            len(message.data),
        )
        return len(recipients) - excluded

    def close(self, room: Room, reason: str) -> list[Node]:
        members = list(room.recipients)
        self.deliver(room, Outbound(closed_notice(room, reason, self._now_ms())), None)
        for member in members:
            member.rooms.pop(room.id, None)
        room.members.clear()
        room.recipients, room.transports = (), {}
        if self._rooms.get(room.id) is room:
            del self._rooms[room.id]
            if self._by_name.get(room.name) is room:
                del self._by_name[room.name]
        return members

    def publish(
        self, room: Room, head: dict[str, Any], payload: str, exclude: Node | None, key: str | None
    ) -> defer.Deferred[Published]:
        data, position = kept(self.history, room, head, payload)
        return defer.succeed(Published(self.deliver(room, Outbound(data), exclude), position))

    def recover(self, room: Room, node: Node, since: Position | None) -> defer.Deferred[Recovery]:
        return defer.succeed(self.history.recover(room.id, since))

    def members(self, room: Room) -> Verbatim:
        return member_list(room)

    def room_count(self) -> int:
        return len(self._rooms)

    def rooms(self) -> Iterable[Room]:
        return list(self._rooms.values())


def kept(history: IHistory, room: Room, head: dict[str, Any], payload: str) -> tuple[bytes, Position | None]:
    """A room message encoded once, with its history position in ``head`` when history is on."""

    def encode_at(position: Position | None) -> bytes:
        if position is not None:
            head["offset"] = position.offset
            head["epoch"] = position.epoch
        return splice(head, "payload", payload)

    return history.append(room.id, encode_at)


def member_list(room: Room) -> Verbatim:
    """The members' public descriptions as one JSON array, joined from their introductions.

    Byte for byte ``[member.describe() for member in room.recipients]``
    encoded; no description is encoded again (a join ack lists every
    member).
    """
    return Verbatim("[" + ",".join([member.introduction for member in room.recipients]) + "]")


def closed_notice(room: Room, reason: str, timestamp: int) -> bytes:
    """The ``presence`` ``closed`` notice every member of a closed room gets."""
    return encode({
        "type": "presence",
        "nodeId": None,
        "groupId": room.id,
        "payload": {
            "event": "closed",
            "groupId": room.id,
            "groupName": room.name,
            "memberCount": 0,
            "reason": reason,
        },
        "timestamp": timestamp,
    })
