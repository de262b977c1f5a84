"""The directory: this gateway's changes written to Redis, and the other gateways' applied here.

Part of ``ClusterRooms`` (it inherits these methods). Each gateway owns
its nodes and their memberships; every change is written to its state
hash in Redis and announced on the directory channel, numbered, so a gap
is noticed (then the gateway's whole state is read again), and every
gateway applies the others' changes to its mirror: remote nodes as
``Node`` records whose connection is a ``RemoteConnection``.
"""

from __future__ import annotations

import json
from typing import Any

from wingman_gateway.cluster import wire
from wingman_gateway.cluster.mirror import Peer, RemoteConnection
from wingman_gateway.logs import get_logger
from wingman_gateway.state import Node, Room

log = get_logger("wingman_gateway.cluster.directory")


def _ignore(message: Any) -> None:
    """A remote node's ``send``: its gateway delivers to it."""


class Directory:
    """The node directory's side of ``ClusterRooms``."""

    gateway_id: str
    names: wire.Names
    link: Any
    seq: int
    peers: dict[str, Peer]
    _local: dict[str, Node]
    _remote: dict[str, Node]
    _rooms: dict[str, Room]

    def _command(self, link: Any, *args: Any) -> None:
        raise NotImplementedError

    def _enter(self, room: Room, node: Node) -> None:
        raise NotImplementedError

    def _part(self, room: Room, node: Node, reason: str) -> None:
        raise NotImplementedError

    def _register(self, room: Room) -> None:
        raise NotImplementedError

    def directory_event(self, message: bytes) -> None:
        """One change announced on the directory channel."""
        try:
            event = json.loads(message)
            gateway_id = str(event["gw"])
        except (ValueError, KeyError, TypeError):
            log.warn("cluster: unreadable directory event ignored")
            return
        if gateway_id != self.gateway_id:
            self._event(gateway_id, event)

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
        proxy.introduce(record.get("name"), list(record.get("capabilities") or []), record.get("agentName"))
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
