"""Where the members of each room are: here (by node and transport), and how many on each other gateway.

A fan-out reads this once: the local members get the message, each
gateway counted here gets one frame, and the metrics get the local
members by transport without a step per recipient.
"""

from __future__ import annotations

from wingman_gateway.state import Node


class Placement:
    """Per room: its members on this gateway, and member counts on the others."""

    def __init__(self) -> None:
        self.here: dict[str, tuple[Node, ...]] = {}
        self.transports: dict[str, dict[str, int]] = {}  # the members here, by transport
        self.spread: dict[str, dict[str, int]] = {}  # gateway id to member count

    def enter_here(self, room_id: str, node: Node) -> None:
        self.here[room_id] = self.here.get(room_id, ()) + (node,)
        _add(self.transports.setdefault(room_id, {}), node.conn.transport_name, 1)

    def part_here(self, room_id: str, node: Node) -> None:
        self.here[room_id] = tuple(m for m in self.here.get(room_id, ()) if m is not node)
        _add(self.transports.setdefault(room_id, {}), node.conn.transport_name, -1)

    def enter_there(self, room_id: str, gateway_id: str) -> None:
        _add(self.spread.setdefault(room_id, {}), gateway_id, 1)

    def part_there(self, room_id: str, gateway_id: str) -> None:
        _add(self.spread.setdefault(room_id, {}), gateway_id, -1)

    def drop(self, room_id: str) -> None:
        """The room is gone here."""
        self.here.pop(room_id, None)
        self.transports.pop(room_id, None)
        self.spread.pop(room_id, None)


def _add(counts: dict[str, int], key: str, amount: int) -> None:
    left = counts.get(key, 0) + amount
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)
