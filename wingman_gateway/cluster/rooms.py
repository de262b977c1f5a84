"""``ClusterRooms``: the rooms seam shared by every gateway of a cluster.

Each gateway owns its nodes and their memberships; every change is
written to its state hash in Redis and announced on the directory channel
(numbered, so a gap is noticed), and every gateway applies the others'
changes to its mirror. Lookups (rooms by name or id, the members of a
room, a direct message's target) are thus answered from memory, at once.

A message for a room is handed to the local members, then published once
to the inbox channel of each other gateway that has members of the room:
one frame per gateway, never one per recipient, made from the envelope's
bytes as the Router encoded them. The receiving gateway hands the same
bytes to its own members.
"""

from __future__ import annotations

import json
import secrets
from typing import Any, Iterable

from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from wingman_gateway import errors
from wingman_gateway.cluster import wire
from wingman_gateway.cluster.mirror import Peer, RemoteConnection, peer_of
from wingman_gateway.cluster.placement import Placement
from wingman_gateway.connection import Outbound
from wingman_gateway.errors import GatewayError
from wingman_gateway.events import Events
from wingman_gateway.logs import get_logger
from wingman_gateway.history import HistorySettings, MemoryHistory, Position, Recovery
from wingman_gateway.presence import Presence
from wingman_gateway.rooms import IRooms, closed_notice, kept
from wingman_gateway.state import Node, Room

log = get_logger("wingman_gateway.cluster.rooms")


def _ignore(message: Outbound) -> None:
    """A remote node's ``send``: its gateway delivers to it."""


@implementer(IRooms)
class ClusterRooms:
    """Nodes and rooms of every gateway in the cluster; this one's nodes are local."""

    def __init__(
        self, clock: IReactorTime, gateway_id: str, names: wire.Names, events: Events | None = None
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
        # Room history is not kept in a cluster: each gateway would hold its
        # own, with its own offsets. Stateless, as with --history-size 0.
        self.history = MemoryHistory(clock, HistorySettings(size=0))
        # Messages for other gateways: published, and not forwarded (Redis down).
        self.forwarded = 0
        self.not_forwarded = 0
        self.unreceived = 0  # published while no gateway listened (it had just died)
        self._outage_losses = 0

    def _now_ms(self) -> int:
        return int(self.clock.seconds() * 1000)

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
        self.history.open(room.id)
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

    def deliver(self, room: Room, message: Outbound, exclude: Node | None) -> int:
        self.presence.flush(room.id)  # notices of this turn go first
        count = self._hand(room.id, message, exclude)
        spread = self.placement.spread.get(room.id)
        if spread:
            data = wire.frame(wire.BROADCAST, room.id, message.data)
            forwarded = 0
            for gateway_id, members in spread.items():
                if self._forward(gateway_id, data):
                    count += members
                    forwarded += 1
            self._tally(forwarded, len(spread) - forwarded)
        return count

    def _hand(self, room_id: str, message: Outbound, exclude: Node | None) -> int:
        """``message`` to this gateway's members of the room but ``exclude`` (one event)."""
        members = self.placement.here.get(room_id, ())
        excluded = False
        for member in members:
            if member is not exclude:
                member.send(message)
            else:
                excluded = True
        if members:
            self.events.emit(
                "delivered", self.placement.transports[room_id],
                exclude.conn.transport_name if exclude is not None and excluded else None,
                len(message.data),
            )
        return len(members) - excluded

    def publish(
        self, room: Room, head: dict[str, Any], payload: str, exclude: Node | None
    ) -> tuple[int, Position | None]:
        data, position = kept(self.history, room, head, payload)
        return self.deliver(room, Outbound(data), exclude), position

    def recover(self, room: Room, since: Position | None) -> Recovery:
        return self.history.recover(room.id, since)

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
        return members

    def _shut(self, room: Room, notice: bytes) -> None:
        """This gateway's part of a close: its members are told and leave; the room is gone here."""
        local = self.placement.here.get(room.id, ())
        if local:
            self.presence.flush(room.id)
            self._hand(room.id, Outbound(notice), None)
        self.placement.drop(room.id)
        for member in room.recipients:
            member.rooms.pop(room.id, None)
        room.members.clear()
        room.recipients, room.transports = (), {}
        if self._rooms.get(room.id) is room:
            del self._rooms[room.id]
            del self._by_name[room.name]
        for member in local:
            self._announce(member, None)

    def members(self, room: Room) -> list[dict[str, Any]]:
        return [member.describe() for member in room.recipients]

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

    def _announce(self, node: Node, reason: str | None) -> None:
        """Write a local node's change to our state hash and tell the cluster."""
        self.seq += 1
        link = self.link
        if link is None or not link.up:
            return  # the whole state is written again when Redis is back
        node_id = str(node.node_id)
        record = wire.node_record(node) if self._local.get(node_id) is node else None
        state = self.names.state(self.gateway_id)
        if record is not None:
            self._command(link, "HSET", state, "n:" + node_id, wire.dumps(record), "seq", self.seq)
        else:
            self._command(link, "HDEL", state, "n:" + node_id)
            self._command(link, "HSET", state, "seq", self.seq)
        event = {"gw": self.gateway_id, "seq": self.seq, "node": node_id, "record": record}
        if reason is not None:
            event["reason"] = reason
        self._command(link, "PUBLISH", self.names.directory, wire.dumps(event))

    def state_fields(self) -> list[Any]:
        """Our whole state as HSET field/value pairs (written when Redis comes back)."""
        fields: list[Any] = ["seq", self.seq]
        for node_id, node in self._local.items():
            fields += ["n:" + node_id, wire.dumps(wire.node_record(node))]
        return fields

    def _forward(self, gateway_id: str, data: bytes) -> bool:
        link = self.link
        published = None if link is None else link.execute("PUBLISH", self.names.inbox(gateway_id), data)
        if published is None:
            self.not_forwarded += 1
            self._outage_losses += 1
            if self._outage_losses == 1:
                log.warn(
                    "cluster: Redis is unreachable; messages for other gateways are not "
                    "forwarded (counted in /health cluster.notForwarded)",
                )
            return False
        self.forwarded += 1
        published.addCallbacks(self._published, self._failed)
        return True

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
        if channel == self.inbox:
            self._from_inbox(message)
        elif channel == self.directory:
            try:
                event = json.loads(message)
                gateway_id = str(event["gw"])
            except (ValueError, KeyError, TypeError):
                log.warn("cluster: unreadable directory event ignored")
                return
            if gateway_id != self.gateway_id:
                self._event(gateway_id, event)

    def _from_inbox(self, message: bytes) -> None:
        kind, target, data = wire.unframe(message)
        if kind == wire.BROADCAST:
            if target in self.placement.here:
                self.presence.flush(target)
                self._hand(target, Outbound(data), None)
        elif kind == wire.CLOSED:
            room = self._rooms.get(target)
            if room is not None:
                self._shut(room, data)
        elif kind == wire.DIRECT:
            node = self._local.get(target)
            if node is not None:
                self.presence.flush_for(node)
                node.send(Outbound(data))
                self.events.emit("delivered", {node.conn.transport_name: 1}, None, len(data))

    def peer(self, gateway_id: str) -> Peer:
        peer = self.peers.get(gateway_id)
        if peer is None:
            peer = self.peers[gateway_id] = Peer(gateway_id)
        return peer

    def _event(self, gateway_id: str, event: dict[str, Any]) -> None:
        peer = self.peer(gateway_id)
        if event.get("bye"):
            self.forget(gateway_id, "gateway stopped")
            return
        seq = int(event.get("seq") or 0)
        if event.get("sync"):
            peer.name = str(event.get("name") or peer.name)
            peer.stale = True
            return
        if seq <= peer.applied:
            return
        if seq != peer.applied + 1:
            peer.stale = True  # a change was missed: read its whole state again
        peer.applied = seq
        self.apply(peer, str(event.get("node")), event.get("record"), str(event.get("reason") or "left"))

    def apply(self, peer: Peer, node_id: str, record: dict[str, Any] | None, reason: str) -> None:
        """A remote node is now as ``record`` says (None: gone)."""
        proxy = self._remote.get(node_id)
        if record is None:
            if proxy is None:
                return
            for room in list(proxy.rooms.values()):
                self._part(room, proxy, reason)
            del self._remote[node_id]
            peer.nodes.discard(node_id)
            return
        if proxy is None:
            if node_id in self._local:
                log.error("cluster: node id {nodeId} is taken on two gateways", nodeId=node_id)
                return
            connected = float(record.get("connectedAt") or 0) / 1000
            proxy = Node(
                conn=RemoteConnection(peer, str(record.get("transport") or "remote")),
                send=_ignore,
                connected_at=connected,
                last_seen=connected,
                source=f"gateway {peer.name or peer.id}",
                budget=None,
                heartbeat_budget=None,
                node_id=node_id,
            )
            self._remote[node_id] = proxy
            peer.nodes.add(node_id)
        proxy.name = record.get("name")
        proxy.capabilities = list(record.get("capabilities") or [])
        proxy.agent_name = record.get("agentName")
        wanted = record.get("rooms") or {}
        for room_id in [r for r in proxy.rooms if r not in wanted]:
            self._part(proxy.rooms[room_id], proxy, reason)
        for room_id, meta in wanted.items():
            if room_id not in proxy.rooms:
                self._enter(self._room_for(meta), proxy)

    def _room_for(self, meta: dict[str, Any]) -> Room:
        """The room ``meta`` describes; of two creations, the earlier one's details win."""
        room = self._rooms.get(str(meta["id"]))
        if room is None:
            room = wire.room_from_meta(meta)
            self._register(room)
        elif wire.older(meta, room):
            known = wire.room_from_meta(meta)
            room.description, room.strategy = known.description, known.strategy
            room.created_at, room.created_by = known.created_at, known.created_by
        return room

    def reconcile(self, gateway_id: str, fields: dict[str, str]) -> bool:
        """A gateway's whole state as read from Redis; False if older than what we have."""
        peer = self.peer(gateway_id)
        seq = int(fields.get("seq") or 0)
        if seq < peer.applied:
            return False
        records: dict[str, dict[str, Any]] = {}
        for key, value in fields.items():
            if key.startswith("n:"):
                try:
                    records[key[2:]] = json.loads(value)
                except ValueError:
                    log.warn("cluster: unreadable node record {key} ignored", key=key)
        for node_id in list(peer.nodes):
            if node_id not in records:
                self.apply(peer, node_id, None, "disconnected")
        for node_id, record in records.items():
            self.apply(peer, node_id, record, "left")
        peer.applied = seq
        peer.stale = False
        return True

    def forget(self, gateway_id: str, reason: str) -> None:
        """A gateway is gone: its nodes leave their rooms (members are told why)."""
        peer = self.peers.pop(gateway_id, None)
        if peer is None:
            return
        count = len(peer.nodes)
        for node_id in list(peer.nodes):
            self.apply(peer, node_id, None, reason)
        log.warn(
            "cluster: gateway {gateway} is gone ({reason}); {count} of its nodes removed",
            gateway=peer.name or gateway_id,
            reason=reason,
            count=count,
        )
