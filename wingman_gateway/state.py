"""The Router's in-memory state: connections, nodes and rooms.

Plain data; nothing here knows a transport or the wire format.
"""

from __future__ import annotations

from typing import Any, Callable

import attrs

from wingman_gateway.auth import Grant
from wingman_gateway.connection import IConnection, Outbound
from wingman_gateway.ratelimit import SlidingWindow


@attrs.define(eq=False, slots=True, repr=False)
class Session:
    """One client connection; it becomes a node when it registers."""

    conn: IConnection
    send: Callable[[Outbound], None]
    connected_at: float
    last_seen: float
    window: SlidingWindow | None
    node_id: str | None = None
    name: str | None = None
    capabilities: list[str] = attrs.Factory(list)
    agent_name: str | None = None
    session_id: str | None = None
    metadata: dict[str, Any] | None = None
    grant: Grant | None = None
    rooms: dict[str, "Room"] = attrs.Factory(dict)
    closed: bool = False

    def __repr__(self) -> str:
        return f"<Session node={self.node_id} name={self.name!r} peer={self.conn.peer}>"

    def describe(self) -> dict[str, Any]:
        """Public description of the node, as other members see it."""
        info: dict[str, Any] = {
            "nodeId": self.node_id,
            "name": self.name,
            "capabilities": self.capabilities,
        }
        if self.agent_name is not None:
            info["agentName"] = self.agent_name
        return info


@attrs.define(eq=False, slots=True, repr=False)
class Room:
    """A named group; every message sent to it reaches every other member."""

    id: str
    name: str
    description: str | None
    strategy: str
    created_at: int
    created_by: str
    members: dict[str, Session] = attrs.Factory(dict)
    # Snapshot of members for fan-out, rebuilt when membership changes, so
    # a member dropped during a fan-out cannot disturb the loop.
    recipients: tuple[Session, ...] = ()

    def __repr__(self) -> str:
        return f"<Room {self.id} {self.name!r} members={len(self.members)}>"

    def add(self, session: Session) -> None:
        self.members[session.node_id] = session  # type: ignore[index]
        self.recipients = tuple(self.members.values())

    def remove(self, session: Session) -> None:
        self.members.pop(session.node_id, None)  # type: ignore[arg-type]
        self.recipients = tuple(self.members.values())

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "strategy": self.strategy,
            "memberCount": len(self.members),
            "createdAt": self.created_at,
            "createdBy": self.created_by,
        }
