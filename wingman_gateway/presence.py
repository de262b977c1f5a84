"""Presence notices, gathered per room for one reactor turn.

Telling every member of a room about each join and departure costs n²/2
notices when n nodes join. The notices of one turn are therefore sent
together, at the end of the turn: a member gets one envelope per room per
turn. A single event keeps the classic ``presence`` envelope; several make
one ``presence`` whose payload is ``{"event": "batch", "events": [...]}``,
in order. Each member gets exactly the events that happened while it was a
member (not its own join); a message sent to the room, or to a member,
first flushes what is pending, so nothing overtakes a notice.

A turn is not enough when nodes join one after another, each after the
previous one's ack: every join is its own turn, and 1,000 of them still
cost 500,000 envelopes. In a room of more than ``CROWD`` members the
notices are therefore gathered for ``WINDOW`` seconds instead of one turn:
a member of a big room gets at most one presence envelope per room per
window, holding every event in order, whatever the rate of joins.
"""

from __future__ import annotations

from typing import Any, Callable

import attrs
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from wingman_gateway.connection import Outbound
from wingman_gateway.envelope import encode
from wingman_gateway.state import Node, Room

# Rooms of more members than this gather presence over WINDOW seconds.
CROWD = 50
WINDOW = 0.05


@attrs.define
class _Batch:
    room: Room
    # Per event: its payload (classic form), and its record for a batch as
    # JSON text. Apart, so a member's part of a batch is joined in one C
    # call: each member gets the events from its start, n²/2 records in all.
    payloads: list[dict[str, Any]] = attrs.Factory(list)
    records: list[str] = attrs.Factory(list)
    # Members that joined during the turn: the index of their first event.
    starts: dict[str, int] = attrs.Factory(dict)


class Presence:
    """Pending presence per room, flushed once a turn (or before other traffic)."""

    def __init__(
        self, clock: IReactorTime, now_ms: Callable[[], int], crowd: int = CROWD, window: float = WINDOW
    ) -> None:
        self._clock = clock
        self._now_ms = now_ms
        self._crowd = crowd
        self._window = window
        self._pending: dict[str, _Batch] = {}
        self._call: IDelayedCall | None = None  # the end of this turn
        self._later: IDelayedCall | None = None  # the end of the window, for big rooms
        self.envelopes = 0  # presence envelopes handed to members (for /stats and benchmarks)

    def event(self, room: Room, node: Node, event: str, reason: str | None) -> None:
        """``node`` joined or left ``room`` (already reflected in its members)."""
        payload = node.describe()
        payload.update(
            event=event, groupId=room.id, groupName=room.name, memberCount=len(room.members)
        )
        if reason is not None:
            payload["reason"] = reason
        record = {key: value for key, value in payload.items() if key not in ("groupId", "groupName")}
        batch = self._pending.get(room.id)
        if batch is None or batch.room is not room:
            batch = self._pending[room.id] = _Batch(room)
        batch.payloads.append(payload)
        batch.records.append(encode(record).decode("ascii"))
        if event == "joined":
            batch.starts[node.registered_id] = len(batch.records)
        if len(room.members) > self._crowd:
            if self._later is None:
                self._later = self._clock.callLater(self._window, self._flush_window)
        elif self._call is None:
            self._call = self._clock.callLater(0, self.flush_all)

    def flush_all(self) -> None:
        """The end of a turn: rooms up to ``crowd`` members; big ones wait for their window."""
        self._call = None
        for room_id, batch in list(self._pending.items()):
            if len(batch.room.members) <= self._crowd:
                self.flush(room_id)
        if self._pending and self._later is None:
            self._later = self._clock.callLater(self._window, self._flush_window)

    def _flush_window(self) -> None:
        self._later = None
        while self._pending:
            self.flush(next(iter(self._pending)))

    def flush(self, room_id: str) -> None:
        """Send what is pending for one room now."""
        batch = self._pending.pop(room_id, None)
        if batch is None or not batch.room.members:
            return
        count = len(batch.records)
        made: dict[int, Outbound] = {}
        for member in batch.room.recipients:
            start = batch.starts.get(member.registered_id, 0)
            if start >= count:
                continue
            message = made.get(start)
            if message is None:
                message = made[start] = self._envelope(batch, start)
            self.envelopes += 1
            member.send(message)

    def flush_for(self, node: Node) -> None:
        """Before anything else reaches ``node``: what is pending for its rooms."""
        if self._pending:
            for room_id in list(node.rooms):
                if room_id in self._pending:
                    self.flush(room_id)

    def _envelope(self, batch: _Batch, start: int) -> Outbound:
        room = batch.room
        if len(batch.records) - start == 1:
            payload = batch.payloads[start]
            return Outbound(encode({
                "type": "presence",
                "nodeId": payload["nodeId"],
                "groupId": room.id,
                "payload": payload,
                "timestamp": self._now_ms(),
            }))
        head = encode({
            "type": "presence",
            "groupId": room.id,
            "timestamp": self._now_ms(),
            "payload": {
                "event": "batch",
                "groupId": room.id,
                "groupName": room.name,
                "memberCount": len(room.members),
            },
        })
        records = ",".join(batch.records[start:])
        return Outbound(head[:-2] + b',"events":[' + records.encode("ascii") + b"]}}")
