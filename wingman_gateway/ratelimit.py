"""Per-node message rate limiting as a true sliding window."""

from __future__ import annotations

from collections import deque


class SlidingWindow:
    """Allows at most ``limit`` events in any ``window`` seconds.

    Keeps the times of the last ``limit`` accepted events: an event is
    refused exactly when the oldest of them is still inside the window, so
    a steady sender below the limit is never refused and a burst above it
    always is. Memory is allocated on first use only.
    """

    __slots__ = ("limit", "window", "_times")

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._times: deque[float] | None = None

    def hit(self, now: float) -> float:
        """Record an event at ``now``; return 0 if allowed, else seconds to wait."""
        times = self._times
        if times is None:
            times = self._times = deque(maxlen=self.limit)
        if len(times) == self.limit:
            wait = times[0] + self.window - now
            if wait > 0:
                return wait
        times.append(now)
        return 0.0
