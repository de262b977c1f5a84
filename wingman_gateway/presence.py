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
previous one's ack (every join is its own turn: 1,000 of them still cost
500,000 envelopes), nor when thousands rejoin at once after a restart
(each room is told anew in every turn). In a room of more than ``CROWD``
members the notices are therefore paced: they go out at the end of their
turn if the room was last told at least ``pace(members)`` ago (``PACE``
per member, at most ``MAX_PACE``), else when that much time has passed,
holding every event since, in order. A quiet big room hears of a join
at once; a busy one gets at most one envelope per member per pace, and
the room as a whole about 1 / ``PACE`` envelopes a second, whatever its
size and the rate of joins.
"""

from __future__ import annotations

from typing import Any, Callable

import attrs
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from wingman_gateway.connection import Outbound
from wingman_gateway.envelope import encode
from wingman_gateway.state import Node, Room

# Rooms of more members than this have their presence paced.
CROWD = 50
# Seconds between a paced room's notices, per member, and at most.
PACE = 0.01
MAX_PACE = 1.0


def pace(members: int) -> float:
    """The least time between two presence envelopes to a member of a crowded room."""
    return min(MAX_PACE, PACE * members)


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

    def __init__(self, clock: IReactorTime, now_ms: Callable[[], int], crowd: int = CROWD) -> None:
        self._clock = clock
        self._now_ms = now_ms
        self._crowd = crowd
        self._pending: dict[str, _Batch] = {}
        self._call: IDelayedCall | None = None  # the end of this turn
        self._later: IDelayedCall | None = None  # the first paced room's time, for big rooms
        self.envelopes = 0  # presence envelopes handed to members (for /stats and benchmarks)

    def event(self, room: Room, node: Node, event: str, reason: str | None) -> None:
        """``node`` joined or left ``room`` (already reflected in its members)."""
        count = len(room.members)
        payload = node.describe()
        payload.update(event=event, groupId=room.id, groupName=room.name, memberCount=count)
        tail: dict[str, Any] = {"event": event, "memberCount": count}
        if reason is not None:
            payload["reason"] = tail["reason"] = reason
        # A batch's record: the payload without the room, which is its
        # encoded description (kept since it was introduced) and ``tail``.
        record = node.introduction[:-1] + "," + encode(tail).decode("ascii")[1:]
        batch = self._pending.get(room.id)
        if batch is None or batch.room is not room:
            batch = self._pending[room.id] = _Batch(room)
        batch.payloads.append(payload)
        batch.records.append(record)
        if event == "joined":
            batch.starts[node.registered_id] = len(batch.records)
        due = self._due(room)
        if due <= self._clock.seconds():
            if self._call is None:
                self._call = self._clock.callLater(0, self.flush_all)
        elif self._later is None:
            self._wait()
        elif self._later.getTime() > due:  # this room's time comes first
            self._later.cancel()
            self._wait()

    def _due(self, room: Room) -> float:
        """When ``room``'s pending notices may go out (-inf: at the end of the turn)."""
        members = len(room.members)
        return room.told_at + pace(members) if members > self._crowd else float("-inf")

    def flush_all(self) -> None:
        """The end of a turn: every room whose notices are due; paced ones wait for their time."""
        self._call = None
        self._flush_due()

    def _flush_due(self) -> None:
        now = self._clock.seconds()
        for room_id, batch in list(self._pending.items()):
            if self._due(batch.room) <= now:
                self.flush(room_id)
        if self._later is None:
            self._wait()

    def _wait(self) -> None:
        """Time the first paced room's notices, if any wait."""
        if self._pending:
            first = min(self._due(batch.room) for batch in self._pending.values())
            self._later = self._clock.callLater(max(0.0, first - self._clock.seconds()), self._paced)

    def _paced(self) -> None:
        self._later = None
        self._flush_due()

    def flush(self, room_id: str) -> None:
        """Send what is pending for one room now."""
        batch = self._pending.pop(room_id, None)
        if batch is None or not batch.room.members:
            return
        batch.room.told_at = self._clock.seconds()
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
