"""Where a node is in each room, so it can resume after a reconnect.

The gateway numbers each room's broadcasts (``offset``, in an ``epoch``).
The client remembers the last position it has seen per room name, asks
for what came after it when it rejoins (``since``), drops a broadcast it
has already seen, and tells the application whether it got everything.
"""

from __future__ import annotations

from typing import Any

RECOVERED = "recovered"
GAP = "gap"


class Positions:
    """The last ``(offset, epoch)`` seen in each room, by room name."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[int, str]] = {}

    def since(self, room: str) -> dict[str, Any] | None:
        """The ``since`` to rejoin ``room`` with, or None when nothing is known."""
        known = self._last.get(room)
        return None if known is None else {"offset": known[0], "epoch": known[1]}

    def forget(self, room: str) -> None:
        self._last.pop(room, None)

    def seen(self, envelope: dict[str, Any]) -> bool:
        """Record a position (of a broadcast, or an ack's); False if it was seen before."""
        room, offset, epoch = envelope.get("groupName"), envelope.get("offset"), envelope.get("epoch")
        if not isinstance(room, str) or not isinstance(offset, int) or not isinstance(epoch, str):
            return True
        known = self._last.get(room)
        if known is not None and known[1] == epoch and known[0] >= offset:
            return False
        self._last[room] = (offset, epoch)
        return True

    def resumed(self, since: dict[str, Any] | None, ack: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        """After a rejoin from ``since``: the event to tell (``recovered`` or
        ``gap``) and its details; None when there was nothing to resume."""
        room = ack.get("groupName")
        if since is None or not isinstance(room, str):
            self.seen(ack)
            return None
        details: dict[str, Any] = {"room": room, "since": since}
        if ack.get("recovered") is True:
            # The missed messages follow the ack; they move the position on.
            details["missed"] = int(ack.get("offset", since["offset"])) - int(since["offset"])
            return RECOVERED, details
        details["reason"] = ack.get("reason", "history off")
        self._last.pop(room, None)
        self.seen(ack)
        return GAP, details
