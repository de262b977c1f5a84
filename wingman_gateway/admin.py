"""What an administrator may do to a running gateway, apart from any wire format.

The server API (``web/api.py``) is one way in. Publishing goes through the
rooms seam (``IRooms.publish``) exactly as a node's broadcast does, so it
reaches members on every transport; the envelope says it comes from the
gateway (``fromNodeId`` null, ``fromName`` the gateway's name). Errors are
the protocol's (``GatewayError``).
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import defer

from wingman_gateway import errors
from wingman_gateway.connection import CLOSE_POLICY
from wingman_gateway.errors import GatewayError
from wingman_gateway.history import Published
from wingman_gateway.router import Router
from wingman_gateway.state import Node, Room

KICK_REASON = "disconnected by the gateway's administrator"
CLOSE_REASON = "room closed by the gateway's administrator"
# A reason shown to clients: one line, and short enough for a WebSocket close frame.
MAX_REASON = 120

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def reason_text(value: Any, default: str) -> str:
    """A reason given by an administrator, checked."""
    if value is None:
        return default
    if not isinstance(value, str) or not value.strip():
        raise GatewayError(errors.INVALID_REQUEST, "'reason' must be a non-empty string")
    if len(value) > MAX_REASON or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise GatewayError(
            errors.INVALID_REQUEST,
            f"'reason' must be one line of at most {MAX_REASON} characters",
        )
    return value


class Admin:
    """The administrator's operations on one Router."""

    def __init__(self, router: Router) -> None:
        self.router = router

    def room(self, name: Any) -> Room:
        """The room named by id or name, as in the protocol."""
        if not isinstance(name, str) or not name:
            raise GatewayError(errors.INVALID_REQUEST, "a room is named by a non-empty string")
        room = self.router.rooms.find(name)
        if room is None:
            raise GatewayError(errors.GROUP_NOT_FOUND, f"no room {name[:100]!r}")
        return room

    def node(self, node_id: str) -> Node:
        node = self.router.rooms.node(node_id)
        if node is None:
            raise GatewayError(errors.NODE_NOT_FOUND, f"no node {node_id[:100]!r}")
        return node

    # -- publishing -------------------------------------------------------

    def publish(self, rooms: list[Any], message: Any) -> defer.Deferred[list[dict[str, Any]]]:
        """Publish ``message`` to every member of each room, as the gateway (kept
        in the room's history like a node's broadcast); a Deferred of each
        room's outcome (at once on one gateway, from Redis in a cluster).

        Every room is found before anything is sent, so a missing room
        sends nothing at all (``GatewayError`` is raised at once).
        """
        found = [self.room(name) for name in rooms]
        text = _dumps(message)
        if len(text.encode("utf-8")) > self.router.limits.max_payload:
            raise self.router.too_large(len(text.encode("utf-8")))
        sent = []
        for room in found:
            head = {
                "type": "broadcast",
                "nodeId": None,
                "fromNodeId": None,
                "fromName": self.router.gateway_name,
                "groupId": room.id,
                "groupName": room.name,
                "timestamp": self.router.now_ms(),
            }
            published = self.router.rooms.publish(room, head, text, None, None)
            sent.append(published.addCallback(Published.fields, room))
        return defer.gatherResults(sent)

    # -- reports ----------------------------------------------------------

    def rooms(self) -> list[dict[str, Any]]:
        return self.router.room_list()

    def members(self, name: Any) -> dict[str, Any]:
        room = self.room(name)
        members = [self.node_report(member) for member in room.recipients]
        return {"groupId": room.id, "groupName": room.name, "members": members}

    def node_report(self, node: Node) -> dict[str, Any]:
        report = node.report()
        report["peer"] = node.conn.peer
        grant = node.grant
        if grant is not None:
            report["subject"] = grant.subject
            report["keyId"] = grant.key_id
        return report

    # -- interventions ------------------------------------------------------

    def disconnect(self, node_id: str, reason: Any) -> tuple[Node, str]:
        """Close the node's connection with ``reason``; its rooms are told it left."""
        node = self.node(node_id)
        why = reason_text(reason, KICK_REASON)
        node.conn.close(CLOSE_POLICY, why)
        self.router.disconnect(node, why)
        return node, why

    def close_room(self, name: Any, reason: Any) -> tuple[Room, list[Node], str]:
        """Every member is told (``presence`` ``closed``) and leaves; the room is gone."""
        room = self.room(name)
        why = reason_text(reason, CLOSE_REASON)
        return room, self.router.rooms.close(room, why), why
