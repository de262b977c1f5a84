"""One bridge session's outbound queue: numbered, bounded, kept until confirmed.

An HTTP response can be lost on its way (a proxy drops it, the client's
connection breaks), so nothing is dropped when it is sent: each message has
a sequence number and stays queued until the client confirms it by asking
for what comes after it. The queue is bounded in messages and bytes; on
overflow new messages are dropped and counted, and the client gets one
notice saying how many were lost, at the place where they were lost;
``noticed`` hears of each notice once it is queued (the metrics count it).
"""

from __future__ import annotations

from collections import deque
from typing import Callable

# Builds the loss notice (an encoded error envelope) for ``lost`` messages.
NoticeFactory = Callable[[int], bytes]
# Told that the notice of ``lost`` messages was queued.
NoticeHook = Callable[[int], None]


def _ignore(lost: int) -> None:
    pass


class DeliveryQueue:
    """Messages for one client, numbered from 1, until confirmed."""

    def __init__(self, max_messages: int, max_bytes: int, notice: NoticeFactory,
                 noticed: NoticeHook = _ignore) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._notice = notice
        self._noticed = noticed
        self._entries: deque[tuple[int, bytes]] = deque()
        self.bytes = 0
        self.last_seq = 0  # the newest sequence number handed out
        self.confirmed = 0  # everything up to here is confirmed and gone
        self.lost = 0  # dropped since the last loss notice was queued
        self.lost_total = 0

    def __len__(self) -> int:
        return len(self._entries)

    def push(self, data: bytes) -> bool:
        """Queue ``data``; False if it was dropped (and counted) for lack of room."""
        if self.lost:
            self._queue_notice()
        # Nothing may overtake the notice of a gap: while one is pending,
        # later messages are dropped (and counted) too.
        if self.lost or not self._fits(len(data)):
            self.lost += 1
            self.lost_total += 1
            self._queue_notice()
            return False
        self._append(data)
        return True

    def confirm(self, seq: int) -> None:
        """The client has everything up to ``seq``: forget it."""
        if seq <= self.confirmed:
            return
        self.confirmed = min(seq, self.last_seq)
        entries = self._entries
        while entries and entries[0][0] <= seq:
            self.bytes -= len(entries.popleft()[1])
        if self.lost:
            self._queue_notice()

    def after(self, seq: int) -> list[tuple[int, bytes]]:
        """Queued messages numbered above ``seq``, oldest first."""
        entries = self._entries
        if not entries or entries[-1][0] <= seq:
            return []
        start = max(seq + 1 - entries[0][0], 0)
        return [entries[index] for index in range(start, len(entries))]

    def _fits(self, size: int) -> bool:
        return len(self._entries) < self.max_messages and self.bytes + size <= self.max_bytes

    def _append(self, data: bytes) -> None:
        self.last_seq += 1
        self._entries.append((self.last_seq, data))
        self.bytes += len(data)

    def _queue_notice(self) -> None:
        """Queue the notice of the current gap if there is room for it."""
        if self._entries and len(self._entries) >= self.max_messages:
            return
        data = self._notice(self.lost)
        # An empty queue always takes it: a message larger than the whole
        # byte bound must still be reported.
        if self._fits(len(data)) or not self._entries:
            self._append(data)
            lost, self.lost = self.lost, 0
            self._noticed(lost)
