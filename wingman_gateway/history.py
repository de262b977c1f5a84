"""Room history: what was broadcast in each room, so a node can resume.

Every broadcast gets the room's next ``offset`` (1, 2, 3 ...) and the
room's ``epoch``, a string that changes whenever the history is lost (the
room was recreated, the gateway restarted). A node that rejoins with
``since: {offset, epoch}`` gets what it missed, if the history still holds
all of it. The rooms provider calls ``IHistory`` where it decides a room's
order, so positions and delivery order agree.

``MemoryHistory`` keeps each room's recent messages in this process,
bounded by count, age and bytes per room and by bytes for the gateway.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict, deque
from itertools import islice
from typing import Any, Callable, NamedTuple

import attrs
from twisted.internet.interfaces import IReactorTime
from zope.interface import Interface, implementer

from wingman_gateway import errors
from wingman_gateway.errors import GatewayError

MiB = 1024 * 1024
# What one kept message costs beside its bytes (entry object, index slots);
# counted against the byte caps so they bound memory, not just payloads.
ENTRY_OVERHEAD = 200

# Why a position could not be resumed (the ``reason`` of ``recovered: false``).
HISTORY_OFF = "history off"
OTHER_EPOCH = "other epoch"
TOO_OLD = "too old"
UNKNOWN_OFFSET = "unknown offset"


@attrs.frozen
class HistorySettings:
    """``--history-size`` and its companions, as plain values (times in seconds)."""

    size: int = 100  # messages kept per room; 0: no history (stateless)
    ttl: float = 600.0  # a message is kept at most this long
    room_bytes: int = 1 * MiB  # bytes kept per room
    total_bytes: int = 16 * MiB  # bytes kept for all rooms together

    @property
    def enabled(self) -> bool:
        return self.size > 0


class Position(NamedTuple):
    """A place in one room's order: the last ``offset`` seen, in ``epoch``.

    (A named tuple: one is made per broadcast, and these are cheap.)"""

    offset: int
    epoch: str

    def fields(self) -> dict[str, Any]:
        return {"offset": self.offset, "epoch": self.epoch}


@attrs.frozen
class Recovery:
    """The answer to ``since``: the messages after it, or why there are none."""

    position: Position | None  # the room's last position now; None: history off
    recovered: bool | None = None  # None: no ``since`` was asked for
    reason: str | None = None
    messages: tuple[bytes, ...] = ()

    def fields(self) -> dict[str, Any]:
        """The ``join_group`` ack's fields for this recovery."""
        out = self.position.fields() if self.position is not None else {}
        if self.recovered is not None:
            out["recovered"] = self.recovered
        if self.reason is not None:
            out["reason"] = self.reason
        return out


@attrs.frozen
class Published:
    """A broadcast's outcome: how many it was handed to, and its position;
    ``duplicate`` when it repeated an idempotency key seen before (then the
    first send's figures)."""

    recipients: int
    position: Position | None
    duplicate: bool = False

    def fields(self, room: Any) -> dict[str, Any]:
        """The ack's fields for a broadcast to ``room``."""
        out = {"groupId": room.id, "groupName": room.name, "recipients": self.recipients}
        if self.position is not None:  # the room keeps history: where the message stands
            out.update(self.position.fields())
        return out


def parse_since(payload: dict[str, Any]) -> Position | None:
    """``join_group``'s ``since: {offset, epoch}``, checked; None when absent."""
    since = payload.get("since")
    if since is None:
        return None
    if not isinstance(since, dict):
        raise GatewayError(errors.INVALID_REQUEST, "'since' must be an object {offset, epoch}")
    offset, epoch = since.get("offset"), since.get("epoch")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise GatewayError(errors.INVALID_REQUEST, "'since.offset' must be an integer >= 0")
    if not isinstance(epoch, str) or not 0 < len(epoch) <= 100:
        raise GatewayError(errors.INVALID_REQUEST, "'since.epoch' must be a string of 1 to 100 characters")
    return Position(offset, epoch)


class IHistory(Interface):
    """Each room's order (offsets, epoch) and its recent messages."""

    def open(room_id: str) -> None:
        """A new room: its history starts empty, in a new epoch."""

    def close(room_id: str) -> None:
        """The room is gone, and its history with it."""

    def append(room_id: str, encode: Callable[[Position | None], bytes]) -> tuple[bytes, Position | None]:
        """The room's next message: ``encode`` it at its position (None when
        history is off) and keep it; the bytes and the position."""

    def recover(room_id: str, since: Position | None) -> Recovery:
        """The room's position and, with ``since``, the messages after it."""


class _Entry:
    """One kept message (a plain slotted class: one is made per broadcast)."""

    __slots__ = ("log", "offset", "data", "at", "cost", "seq")

    def __init__(self, log: "_Log", offset: int, data: bytes, at: float, cost: int, seq: int) -> None:
        self.log = log
        self.offset = offset
        self.data = data
        self.at = at
        self.cost = cost
        self.seq = seq


@attrs.define(eq=False, slots=True)
class _Log:
    epoch: str
    last: int = 0  # the last offset given out
    lost: int = 0  # the last offset no longer kept (or never kept)
    bytes: int = 0
    entries: deque[_Entry] = attrs.Factory(deque)


@implementer(IHistory)
class MemoryHistory:
    """Room history in this process's memory, bounded as ``settings`` say."""

    def __init__(self, clock: IReactorTime, settings: HistorySettings) -> None:
        self.clock = clock
        self.settings = settings
        self._logs: dict[str, _Log] = {}
        # Every kept entry by a gateway-wide sequence number, oldest first,
        # for the gateway-wide cap and the TTL.
        self._all: OrderedDict[int, _Entry] = OrderedDict()
        self._seq = 0
        self.bytes = 0
        # No entry expires before this time (the oldest's time plus the TTL).
        self._expiry = float("inf")

    def open(self, room_id: str) -> None:
        if self.settings.enabled:
            self._logs[room_id] = _Log(secrets.token_hex(8))

    def close(self, room_id: str) -> None:
        log = self._logs.pop(room_id, None)
        while log is not None and log.entries:
            self._drop(log.entries[0])

    def append(
        self, room_id: str, encode: Callable[[Position | None], bytes]
    ) -> tuple[bytes, Position | None]:
        log = self._logs.get(room_id)
        if log is None:
            return encode(None), None
        offset = log.last = log.last + 1
        position = Position(offset, log.epoch)
        data = encode(position)
        settings = self.settings
        now = self.clock.seconds()
        cost = len(data) + ENTRY_OVERHEAD
        if cost > settings.room_bytes or cost > settings.total_bytes:
            # Not kept: nothing before it can be resumed past it either.
            while log.entries:
                self._drop(log.entries[0])
            log.lost = offset
        else:
            self._seq += 1
            entry = _Entry(log, offset, data, now, cost, self._seq)
            log.entries.append(entry)
            log.bytes += cost
            self._all[entry.seq] = entry
            self.bytes += cost
            if not self.bytes - cost:
                self._expiry = now + settings.ttl
            while len(log.entries) > settings.size or log.bytes > settings.room_bytes:
                self._drop(log.entries[0])
            while self.bytes > settings.total_bytes:
                self._drop(next(iter(self._all.values())))
        if now >= self._expiry:
            self._expire(now)
        return data, position

    def recover(self, room_id: str, since: Position | None) -> Recovery:
        log = self._logs.get(room_id)
        if log is None:
            if since is None:
                return Recovery(None)
            return Recovery(None, False, HISTORY_OFF)
        position = Position(log.last, log.epoch)
        if since is None:
            return Recovery(position)
        self._expire(self.clock.seconds())
        if since.epoch != log.epoch:
            return Recovery(position, False, OTHER_EPOCH)
        if since.offset > log.last:
            return Recovery(position, False, UNKNOWN_OFFSET)
        if since.offset < log.lost:
            return Recovery(position, False, TOO_OLD)
        first = log.entries[0].offset if log.entries else log.last + 1
        missed = islice(log.entries, max(0, since.offset + 1 - first), None)
        return Recovery(position, True, None, tuple(entry.data for entry in missed))

    def _expire(self, now: float) -> None:
        ttl = self.settings.ttl
        while self._all:
            oldest = next(iter(self._all.values()))
            if oldest.at + ttl > now:
                self._expiry = oldest.at + ttl
                return
            self._drop(oldest)
        self._expiry = float("inf")

    def _drop(self, entry: _Entry) -> None:
        """Forget ``entry``, the oldest kept message of its room."""
        log = entry.log
        log.entries.popleft()
        log.bytes -= entry.cost
        log.lost = entry.offset
        del self._all[entry.seq]
        self.bytes -= entry.cost

    def report(self) -> dict[str, Any]:
        """For ``/stats``: how much history is kept."""
        return {"rooms": len(self._logs), "messages": len(self._all), "bytes": self.bytes}
