"""Where a node is in each room, so it can resume after a reconnect.

The gateway numbers each room's broadcasts (``offset``, in an ``epoch``).
The client remembers, per room name, the last offset up to which it has
seen everything (what others sent, and its own sends, which the gateway
acknowledges with their position instead of delivering them back), asks
for what came after it when it rejoins (``since``), drops a broadcast it
has already delivered, and tells the application whether it got all.

Over the HTTP bridge a send's ack and the deliveries travel on different
requests, so an ack can arrive before deliveries that precede it: its
offset waits in ``own`` until the deliveries before it have come.
"""

from __future__ import annotations

from typing import Any

import attrs

RECOVERED = "recovered"
GAP = "gap"
_MAX_OWN = 1000  # own positions waiting for earlier deliveries, per room


@attrs.define
class _Room:
    epoch: str
    last: int  # everything up to here has been seen
    own: set[int] = attrs.Factory(set)  # own sends past ``last``

    def advance(self, offset: int) -> None:
        self.last = max(self.last, offset)
        while self.last + 1 in self.own:
            self.last += 1
        self.own = {o for o in self.own if o > self.last}


def _position(envelope: dict[str, Any]) -> tuple[str, int, str] | None:
    room, offset, epoch = envelope.get("groupName"), envelope.get("offset"), envelope.get("epoch")
    if isinstance(room, str) and isinstance(offset, int) and isinstance(epoch, str):
        return room, offset, epoch
    return None


class Positions:
    """Each room's position, by room name."""

    def __init__(self) -> None:
        self._rooms: dict[str, _Room] = {}

    def since(self, room: str) -> dict[str, Any] | None:
        """The ``since`` to rejoin ``room`` with, or None when nothing is known."""
        known = self._rooms.get(room)
        return None if known is None else {"offset": known.last, "epoch": known.epoch}

    def forget(self, room: str) -> None:
        self._rooms.pop(room, None)

    def _room(self, room: str, epoch: str, offset: int) -> _Room:
        known = self._rooms.get(room)
        if known is None or known.epoch != epoch:
            known = self._rooms[room] = _Room(epoch, offset)
        return known

    def joined(self, ack: dict[str, Any]) -> None:
        """A ``join_group`` ack: the room's position when the node joined."""
        found = _position(ack)
        if found is not None:
            room, offset, epoch = found
            self._room(room, epoch, offset).advance(offset)

    def sent(self, ack: dict[str, Any]) -> None:
        """A ``broadcast`` ack: the position of the node's own message."""
        found = _position(ack)
        if found is None:
            return
        room, offset, epoch = found
        known = self._room(room, epoch, offset - 1)
        if offset > known.last and len(known.own) < _MAX_OWN:
            known.own.add(offset)
            known.advance(known.last)

    def delivered(self, envelope: dict[str, Any]) -> bool:
        """A delivered broadcast; False if it was delivered (or sent) before."""
        found = _position(envelope)
        if found is None:
            return True
        room, offset, epoch = found
        known = self._room(room, epoch, offset - 1)
        if offset <= known.last or offset in known.own:
            return False
        known.advance(offset)
        return True

    def resumed(self, since: dict[str, Any] | None, ack: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        """After a rejoin from ``since``: the event to tell (``recovered`` or
        ``gap``) and its details; None when there was nothing to resume."""
        room = ack.get("groupName")
        if since is None or not isinstance(room, str):
            self.joined(ack)
            return None
        details: dict[str, Any] = {"room": room, "since": since}
        if ack.get("recovered") is True:
            # The missed messages follow the ack; they move the position on.
            details["missed"] = int(ack.get("offset", since["offset"])) - int(since["offset"])
            return RECOVERED, details
        details["reason"] = ack.get("reason", "history off")
        self.joined(ack)
        return GAP, details
