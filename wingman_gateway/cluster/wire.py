"""What goes through Redis: key and channel names, records, frames.

Every gateway owns its keys (its registry entry and its state hash) and
writes nothing else, except when it clears the keys of a gateway found
dead. Room and node ids are plain hex, so frames need no escaping.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from wingman_gateway.state import Node, Room

# How often a gateway refreshes its entry and looks for dead gateways, and
# how long its entry lives without a refresh: a gateway that dies is gone
# from the others within TTL + BEAT. The TTL leaves room for a gateway
# whose event loop is busy for a few seconds (a burst of thousands of
# registrations) without being taken for dead.
BEAT = 1.0
TTL = 5.0

DIRECT = b"D"
CLOSED = b"C"  # a room closed: its notice, for the members on the receiving gateway


class Names:
    """Keys and channels of one cluster (a Redis database)."""

    def __init__(self, db: int) -> None:
        # Pub/sub channels are shared by every database of a server, so the
        # database number is part of every name.
        self.prefix = f"wingman:{db}:"
        self.gateways = self.prefix + "gateways"
        self.directory = self.prefix + "directory"

    def entry(self, gateway_id: str) -> str:
        return f"{self.prefix}gateway:{gateway_id}"

    def state(self, gateway_id: str) -> str:
        return f"{self.prefix}state:{gateway_id}"

    def inbox(self, gateway_id: str) -> str:
        return f"{self.prefix}inbox:{gateway_id}"

    def order(self, room_id: str) -> str:
        """A room's order: its last offset and its epoch (a hash)."""
        return f"{self.prefix}order:{room_id}"

    def history(self, room_id: str) -> str:
        """A room's kept messages (a stream)."""
        return f"{self.prefix}history:{room_id}"

    def room(self, room_id: str) -> str:
        """The channel a room's messages are published on."""
        return f"{self.prefix}room:{room_id}"

    def sent(self, room_id: str, key: str) -> str:
        """A broadcast's idempotency key, with the first send's outcome."""
        return f"{self.prefix}sent:{room_id}:{key}"


def room_id(name: str) -> str:
    """A room's id, the same on every gateway for the same name.

    Two gateways that create a room of the same name at the same moment
    thus create the same room.
    """
    return hashlib.sha256(b"wingman-room\0" + name.encode("utf-8")).hexdigest()[:16]


def node_record(node: Node) -> dict[str, Any]:
    """A node as the other gateways keep it."""
    record = node.describe()
    record["transport"] = node.conn.transport_name
    record["connectedAt"] = int(node.connected_at * 1000)
    record["rooms"] = {room.id: room_meta(room) for room in node.rooms.values()}
    return record


def room_meta(room: Room) -> dict[str, Any]:
    return {
        "id": room.id,
        "name": room.name,
        "description": room.description,
        "strategy": room.strategy,
        "createdAt": room.created_at,
        "createdBy": room.created_by,
    }


def room_from_meta(meta: dict[str, Any]) -> Room:
    return Room(
        id=str(meta["id"]),
        name=str(meta["name"]),
        description=meta.get("description"),
        strategy=str(meta.get("strategy") or "parallel"),
        created_at=int(meta.get("createdAt") or 0),
        created_by=str(meta.get("createdBy") or ""),
    )


def older(meta: dict[str, Any], room: Room) -> bool:
    """Whether ``meta`` describes an earlier creation than ``room`` (it wins)."""
    return (int(meta.get("createdAt") or 0), str(meta.get("createdBy") or "")) < (
        room.created_at,
        room.created_by,
    )


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def frame(kind: bytes, target: str, data: bytes) -> bytes:
    """One message for another gateway: kind, room or node id, the envelope."""
    return kind + target.encode("ascii") + b" " + data


def unframe(message: bytes) -> tuple[bytes, str, bytes]:
    head, _, data = message.partition(b" ")
    return head[:1], head[1:].decode("ascii", "replace"), data
