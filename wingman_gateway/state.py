"""The Router's records: a client connection (``Node``) and a ``Room``.

Plain data; nothing here knows a transport. A node keeps its public
description encoded, since every member list of its rooms holds it.
"""

from __future__ import annotations

from typing import Any, Callable

import attrs

from wingman_gateway.auth import Grant
from wingman_gateway.connection import IConnection, Outbound
from wingman_gateway.envelope import encode
from wingman_gateway.ratelimit import TokenBucket


@attrs.define(eq=False, slots=True, repr=False)
class Node:
    """One client connection as the Router knows it; a node once it registers.

    (A bridge session, an SSH session and a client's session are other
    things: this is the Router's record of any of them.)
    """

    conn: IConnection
    send: Callable[[Outbound], None]
    connected_at: float
    last_seen: float
    # Where the connection comes from (an address) and its rate budgets:
    # one for requests, one for ping/pong; None when rate limits are off.
    source: str
    budget: TokenBucket | None
    heartbeat_budget: TokenBucket | None
    node_id: str | None = None
    name: str | None = None
    capabilities: list[str] = attrs.Factory(list)
    agent_name: str | None = None
    session_id: str | None = None
    # register.metadata as its JSON text: retained bounded as sent, never
    # as decoded objects.
    metadata: str | None = None
    grant: Grant | None = None
    # Closes the node when its token expires (an IDelayedCall), if it does.
    expiry: Any = None
    rooms: dict[str, "Room"] = attrs.Factory(dict)
    closed: bool = False
    # Bytes a second, metered before decoding (metering.py); None when off.
    byte_budget: TokenBucket | None = None
    # ``describe()`` as JSON text, made by ``introduce``: a join ack lists
    # every member, so a room filling up with n members would otherwise
    # encode n²/2 descriptions. Empty until the node is introduced.
    introduction: str = ""

    def __repr__(self) -> str:
        return f"<Node {self.node_id} name={self.name!r} peer={self.conn.peer}>"

    @property
    def registered_id(self) -> str:
        """``node_id`` where the node is known to be registered (a room member, say)."""
        if self.node_id is None:
            raise ValueError(f"{self!r} is not registered")
        return self.node_id

    def introduce(self, name: str | None, capabilities: list[str], agent_name: str | None) -> None:
        """Set what other members see of the registered node, and keep it encoded.

        The only way these three change (``capabilities`` is replaced,
        never changed in place), so ``introduction`` never goes stale.
        """
        if self.node_id is None:
            raise ValueError(f"{self!r} is introduced before it has an id")
        self.name = name
        self.capabilities = capabilities
        self.agent_name = agent_name
        self.introduction = encode(self.describe()).decode("ascii")

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

    def report(self) -> dict[str, Any]:
        """The node as ``/stats`` lists it."""
        return {
            "id": self.node_id,
            "name": self.name,
            "capabilities": self.capabilities,
            "rooms": [room.name for room in self.rooms.values()],
            "transport": self.conn.transport_name,
            "connectedAt": int(self.connected_at * 1000),
            "lastSeen": int(self.last_seen * 1000),
        }


@attrs.define(eq=False, slots=True, repr=False)
class Room:
    """A named group; every message sent to it reaches every other member."""

    id: str
    name: str
    description: str | None
    strategy: str
    created_at: int
    created_by: str
    members: dict[str, Node] = attrs.Factory(dict)
    # Snapshot of members for fan-out, rebuilt when membership changes, so
    # a member dropped during a fan-out cannot disturb the loop.
    recipients: tuple[Node, ...] = ()
    # Members per transport name, kept with the snapshot, so a fan-out is
    # counted by transport without a step per recipient.
    transports: dict[str, int] = attrs.Factory(dict)
    # When presence notices last went out to the members (``presence``'s pace).
    told_at: float = float("-inf")

    def __repr__(self) -> str:
        return f"<Room {self.id} {self.name!r} members={len(self.members)}>"

    # The snapshot is a copy in C (tuple of the dict's values) and the counts
    # change by one: a room filling up with n members costs O(n) Python
    # steps, not O(n²) (counting every member on each join was 9% of the
    # gateway's time when 10,000 nodes rejoined 100 rooms at once).

    def add(self, node: Node) -> None:
        node_id = node.registered_id
        if not node.introduction:
            raise ValueError(f"{node!r} was never introduced")
        self._count(self.members.get(node_id), -1)
        self.members[node_id] = node
        self._count(node, 1)
        self.recipients = tuple(self.members.values())

    def remove(self, node: Node) -> None:
        self._count(self.members.pop(node.registered_id, None), -1)
        self.recipients = tuple(self.members.values())

    def _count(self, member: Node | None, change: int) -> None:
        if member is None:
            return
        name = member.conn.transport_name
        count = self.transports.get(name, 0) + change
        if count > 0:
            self.transports[name] = count
        else:
            self.transports.pop(name, None)

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
