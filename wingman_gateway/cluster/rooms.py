"""``ClusterRooms``: the rooms seam shared by every gateway of a cluster.

Each gateway owns its nodes and their memberships and shares them through
the directory (``directory.py``), so lookups (rooms by name or id, the
members of a room, a direct message's target) are answered from memory,
at once.

A room message goes through Redis (``messages.py``): one script numbers,
keeps and publishes it on the room's channel, and every gateway with
members of the room, the sender's too, hands it to its own members: one
frame per gateway, never one per recipient. Directs and the closing of a
room go to the inbox channel of the gateway concerned.
"""

from __future__ import annotations

import secrets
from typing import Any, Iterable

from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from wingman_gateway import errors
from wingman_gateway.cluster import wire
from wingman_gateway.cluster.directory import Directory
from wingman_gateway.cluster.history import RedisHistory
from wingman_gateway.cluster.messages import RoomMessages
from wingman_gateway.cluster.mirror import Peer, RemoteConnection, peer_of
from wingman_gateway.cluster.placement import Placement
from wingman_gateway.connection import Outbound
from wingman_gateway.envelope import Verbatim
from wingman_gateway.errors import GatewayError
from wingman_gateway.events import Events
from wingman_gateway.logs import get_logger
from wingman_gateway.history import HistorySettings
from wingman_gateway.presence import Presence
from wingman_gateway.rooms import IRooms, closed_notice, member_list
from wingman_gateway.state import Node, Room

log = get_logger("wingman_gateway.cluster.rooms")


@implementer(IRooms)
class ClusterRooms(Directory, RoomMessages):
    """Nodes and rooms of every gateway in the cluster; this one's nodes are local."""

    def __init__(
        self, clock: IReactorTime, gateway_id: str, names: wire.Names, events: Events | None = None,
        history: HistorySettings | None = None,
    ) -> None:
        self.clock = clock
        self.events = events if events is not None else Events()
        self.gateway_id = gateway_id
        self.names = names
        self.inbox = names.inbox(gateway_id).encode("ascii")
        self.directory = names.directory.encode("ascii")
        self.link: Any = None  # the RedisLink, set by the cluster member
        self.peers: dict[str, Peer] = {}
        self.seq = 0
        self._local: dict[str, Node] = {}
        self._remote: dict[str, Node] = {}
        self._rooms: dict[str, Room] = {}
        self._by_name: dict[str, Room] = {}
        # Per room: its members on this gateway, and how many it has on each other gateway.
        self.placement = Placement()
        # Presence notices for this gateway's members, sent once a turn
        # (remote members get them from their own gateway).
        self.presence = Presence(clock, self._now_ms)
        # Room order and history, in Redis.
        self.history = RedisHistory(
            history if history is not None else HistorySettings(), names, self._execute
        )
        self.messages_init()
        # Messages for other gateways: published, and not forwarded (Redis down).
        self.forwarded = 0
        self.not_forwarded = 0
        self.unreceived = 0  # published while no gateway listened (it had just died)
        self._outage_losses = 0

    def _now_ms(self) -> int:
        return int(self.clock.seconds() * 1000)

    def _execute(self, *args: Any) -> Any:
        return None if self.link is None else self.link.execute(*args)

    # -- nodes ------------------------------------------------------------

    def new_node_id(self) -> str:
        node_id = secrets.token_hex(8)
        while node_id in self._local or node_id in self._remote:
            node_id = secrets.token_hex(8)
        return node_id

    def add_node(self, node: Node) -> None:
        assert node.node_id is not None
        self._local[node.node_id] = node
        self._announce(node, None)

    def remove_node(self, node: Node, reason: str) -> None:
        if node.node_id is None or self._local.get(node.node_id) is not node:
            return
        del self._local[node.node_id]
        for room in list(node.rooms.values()):
            self._part(room, node, reason)
        self._announce(node, reason)

    def node(self, node_id: str) -> Node | None:
        return self._local.get(node_id) or self._remote.get(node_id)

    def send_to(self, node_id: str, message: Outbound) -> bool:
        target = self._local.get(node_id)
        if target is not None:
            self.presence.flush_for(target)
            target.send(message)
            self.events.emit("delivered", {target.conn.transport_name: 1}, None, len(message.data))
            return True
        remote = self._remote.get(node_id)
        if remote is None:
            return False
        gateway = peer_of(remote)
        sent = self._forward(gateway.id, wire.frame(wire.DIRECT, node_id, message.data))
        self._tally(int(sent), int(not sent))
        if not sent:
            raise GatewayError(
                errors.UNAVAILABLE,
                f"node {node_id!r} is on gateway {gateway.name or gateway.id}, "
                "which cannot be reached now (the cluster's Redis is unreachable)",
            )
        return True

    def node_count(self) -> int:
        return len(self._local)

    def nodes(self) -> Iterable[Node]:
        return list(self._local.values())

    def remote_nodes(self) -> Iterable[Node]:
        return list(self._remote.values())

    # -- rooms ------------------------------------------------------------

    def find(self, room: str) -> Room | None:
        return self._rooms.get(room) or self._by_name.get(room)

    def find_by_name(self, name: str) -> Room | None:
        return self._by_name.get(name)

    def create(self, name: str, description: str | None, strategy: str, created_by: str) -> Room:
        if name in self._by_name:
            raise ValueError(f"a room named {name!r} exists")
        room = Room(
            id=wire.room_id(name),
            name=name,
            description=description,
            strategy=strategy,
            created_at=self._now_ms(),
            created_by=created_by,
        )
        self._register(room)
        return room

    def join(self, room: Room, node: Node) -> bool:
        if node.node_id in room.members:
            return False
        self._enter(room, node)
        self._announce(node, None)
        return True

    def leave(self, room: Room, node: Node, reason: str) -> None:
        self._part(room, node, reason)
        self._announce(node, reason)

    def close(self, room: Room, reason: str) -> list[Node]:
        """Closed on every gateway: each tells its own members, who leave; the room is gone."""
        members = list(room.recipients)
        gateways = list(self.placement.spread.get(room.id, ()))
        link = self.link
        if gateways and (link is None or not link.up):
            raise GatewayError(
                errors.UNAVAILABLE,
                f"room {room.name!r} has members on other gateways, which cannot be "
                "reached now (the cluster's Redis is unreachable)",
            )
        notice = closed_notice(room, reason, self._now_ms())
        data = wire.frame(wire.CLOSED, room.id, notice)
        forwarded = sum(self._forward(gateway_id, data) for gateway_id in gateways)
        self._tally(forwarded, len(gateways) - forwarded)
        self._shut(room, notice)
        self.history.drop(room.id)
        return members

    def _shut(self, room: Room, notice: bytes) -> None:
        """This gateway's part of a close: its members are told and leave; the room is gone here."""
        local = self.placement.here.get(room.id, ())
        if local:
            self.presence.flush(room.id)
            self._hand(room.id, Outbound(notice), None)
        self.placement.drop(room.id)
        if local:
            self.unsubscribe_room(room.id)
        for member in room.recipients:
            member.rooms.pop(room.id, None)
        room.members.clear()
        room.recipients, room.transports = (), {}
        if self._rooms.get(room.id) is room:
            del self._rooms[room.id]
            del self._by_name[room.name]
        for member in local:
            self._announce(member, None)

    def members(self, room: Room) -> Verbatim:
        return member_list(room)

    def room_count(self) -> int:
        return len(self._rooms)

    def rooms(self) -> Iterable[Room]:
        return list(self._rooms.values())

    # -- membership, for local and remote nodes alike ----------------------

    def _register(self, room: Room) -> None:
        self._rooms[room.id] = room
        self._by_name[room.name] = room

    def _enter(self, room: Room, node: Node) -> None:
        room.add(node)
        node.rooms[room.id] = room
        if isinstance(node.conn, RemoteConnection):
            self.placement.enter_there(room.id, node.conn.gateway.id)
        else:
            if not self.placement.here.get(room.id):
                self.subscribe_room(room.id)
            self.placement.enter_here(room.id, node)
        self._tell(room, node, "joined", None)

    def _part(self, room: Room, node: Node, reason: str) -> None:
        if node.node_id not in room.members:
            return
        room.remove(node)
        node.rooms.pop(room.id, None)
        if isinstance(node.conn, RemoteConnection):
            self.placement.part_there(room.id, node.conn.gateway.id)
        else:
            self.placement.part_here(room.id, node)
            if not self.placement.here.get(room.id):
                self.unsubscribe_room(room.id)
        if room.members:
            self._tell(room, node, "left", reason)
        elif self._rooms.get(room.id) is room:
            del self._rooms[room.id]
            del self._by_name[room.name]
            self.placement.drop(room.id)

    def _tell(self, room: Room, node: Node, event: str, reason: str | None) -> None:
        """Presence for this gateway's members; the others tell their own."""
        if self.placement.here.get(room.id):
            self.presence.event(room, node, event, reason)

    # -- what goes to Redis -------------------------------------------------

    def _forward(self, gateway_id: str, data: bytes) -> bool:
        link = self.link
        published = None if link is None else link.execute("PUBLISH", self.names.inbox(gateway_id), data)
        if published is None:
            self._lost(1)
            return False
        self.forwarded += 1
        published.addCallbacks(self._published, self._failed)
        return True

    def _lost(self, count: int) -> None:
        """Frames for other gateways not forwarded (Redis is unreachable)."""
        self.not_forwarded += count
        self._outage_losses += count
        if self._outage_losses == count:
            log.warn(
                "cluster: Redis is unreachable; messages for other gateways are not "
                "forwarded (counted in /health cluster.notForwarded)",
            )

    def _tally(self, forwarded: int, lost: int) -> None:
        """One fan-out's frames to other gateways, for the metrics (once per fan-out)."""
        if forwarded:
            self.events.emit("backplane_forwarded", count=forwarded)
        if lost:
            self.events.emit("backplane_lost", count=lost)

    def outage_losses(self) -> int:
        """Messages not forwarded since the last call (for a periodic log line)."""
        lost, self._outage_losses = self._outage_losses, 0
        return lost

    def _published(self, receivers: Any) -> None:
        if receivers in (0, "0"):
            self.unreceived += 1

    def _failed(self, failure: Any) -> None:
        self.not_forwarded += 1
        self.events.emit("backplane_lost", count=1)
        log.debug("cluster: a command failed: {why}", why=failure.getErrorMessage())

    def _command(self, link: Any, *args: Any) -> None:
        sent = link.execute(*args)
        if sent is not None:
            sent.addErrback(self._failed)

    # -- what comes from Redis ----------------------------------------------

    def received(self, channel: bytes, message: bytes) -> None:
        room_id = self.room_of(channel)
        if room_id is not None:
            self.from_room(room_id, message)
        elif channel == self.inbox:
            self._from_inbox(message)
        elif channel == self.directory:
            self.directory_event(message)

    def _from_inbox(self, message: bytes) -> None:
        kind, target, data = wire.unframe(message)
        if kind == wire.CLOSED:
            room = self._rooms.get(target)
            if room is not None:
                self._shut(room, data)
        elif kind == wire.DIRECT:
            node = self._local.get(target)
            if node is not None:
                self.presence.flush_for(node)
                node.send(Outbound(data))
                self.events.emit("delivered", {node.conn.transport_name: 1}, None, len(data))

