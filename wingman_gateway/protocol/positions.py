"""Where a node is in each room, so it can resume after a reconnect.

The gateway numbers each room's broadcasts (``offset``, in an ``epoch``).
A node remembers, per room name, the last offset up to which it has seen
everything (what others sent, and its own sends, which the gateway
acknowledges with their position instead of delivering them back), asks
for what came after it when it rejoins (``since``), drops a broadcast it
has already delivered, and tells the application whether it got all of
it (``recovered``) or not (``gap``).

Over the HTTP bridge a send's ack and the deliveries travel on different
requests, so an ack can arrive before deliveries that precede it: its
offset waits in ``own`` until the deliveries before it have come.
"""

from __future__ import annotations

from typing import Any, Sequence

import attrs

from wingman_gateway.protocol.envelopes import Position

RECOVERED = "recovered"
GAP = "gap"
_MAX_OWN = 1000  # own positions waiting for earlier deliveries, per room


@attrs.define
class _Room:
    epoch: Any
    last: int  # everything up to here has been seen
    own: set[int] = attrs.Factory(set)  # own sends past ``last``

    def advance(self, offset: int) -> None:
        self.last = max(self.last, offset)
        while self.last + 1 in self.own:
            self.last += 1
        self.own = {o for o in self.own if o > self.last}


class Positions:
    """Each room's position, by room name."""

    def __init__(self) -> None:
        self._rooms: dict[str, _Room] = {}

    def get(self, room: str) -> Position | None:
        """The ``since`` to rejoin ``room`` with, or None when nothing is known."""
        known = self._rooms.get(room)
        return None if known is None else Position(known.last, known.epoch)

    def _room(self, room: str, position: Position, last: int) -> _Room:
        known = self._rooms.get(room)
        if known is None or known.epoch != position.epoch:
            known = self._rooms[room] = _Room(position.epoch, last)
        return known

    def joined(self, room: str, ack_payload: dict[str, Any], envelope: dict[str, Any]) -> None:
        """A join ack: the room's position then (a new epoch replaces the old)."""
        position = Position.find(ack_payload, envelope)
        if position is not None:
            self._room(room, position, position.offset).advance(position.offset)

    def sent(self, room: str, ack_payload: dict[str, Any]) -> None:
        """A broadcast's ack: the position of the node's own message."""
        position = Position.find(ack_payload)
        if position is None:
            return
        known = self._room(room, position, position.offset - 1)
        if position.offset > known.last and len(known.own) < _MAX_OWN:
            known.own.add(position.offset)
            known.advance(known.last)

    def delivered(self, room: str, envelope: dict[str, Any]) -> bool:
        """A broadcast in ``room``; False if it was delivered (or sent) before."""
        position = Position.find(envelope)  # never the payload: that is the sender's
        if position is None:
            return True
        known = self._room(room, position, position.offset - 1)
        if position.offset <= known.last or position.offset in known.own:
            return False
        known.advance(position.offset)
        return True

    def resumed(
        self, room: str, since: Position | None, ack_payload: dict[str, Any], envelope: dict[str, Any]
    ) -> tuple[str, dict[str, Any]] | None:
        """After a rejoin from ``since``: the event to tell (``recovered`` or
        ``gap``) and its details; None when there was nothing to resume."""
        if since is None:
            self.joined(room, ack_payload, envelope)
            return None
        details: dict[str, Any] = {"room": room, "since": {"offset": since.offset, "epoch": since.epoch}}
        if ack_payload.get("recovered") is True:
            # The missed messages follow the ack; they move the position on.
            offset = ack_payload.get("offset")
            details["missed"] = offset - since.offset if isinstance(offset, int) else 0
            return RECOVERED, details
        details["reason"] = ack_payload.get("reason", "history off")
        self.joined(room, ack_payload, envelope)
        return GAP, details

    def forget(self, room: str) -> None:
        self._rooms.pop(room, None)

    def keep(self, rooms: Sequence[str]) -> None:
        for room in set(self._rooms) - set(rooms):
            del self._rooms[room]
