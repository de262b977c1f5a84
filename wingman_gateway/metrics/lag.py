"""Event-loop lag: how late a periodic call fires, as a histogram.

A busy or blocked reactor runs timed calls late; the lateness of a call
scheduled every ``interval`` seconds measures it.
"""

from __future__ import annotations

from typing import Any, Iterator


from prometheus_client.registry import Collector
from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime

from wingman_gateway.metrics.sink import PREFIX
from wingman_gateway.metrics.tally import Buckets

LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class LoopLag(Service, Collector):
    """Schedules itself every ``interval`` seconds and records how late it ran."""

    name = "event loop lag"

    def __init__(self, clock: IReactorTime, interval: float = 1.0) -> None:
        self.clock = clock
        self.interval = interval
        self.histogram = Buckets(
            PREFIX + "event_loop_lag_seconds", "How late a periodic call ran on the event loop",
            LAG_BUCKETS,
        )
        self._call: Any = None
        self._due = 0.0

    def startService(self) -> None:
        super().startService()
        self._schedule()

    def stopService(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        super().stopService()

    def _schedule(self) -> None:
        self._due = self.clock.seconds() + self.interval
        self._call = self.clock.callLater(self.interval, self._fired)

    def _fired(self) -> None:
        self.histogram.observe(max(0.0, self.clock.seconds() - self._due))
        self._schedule()

    def collect(self) -> Iterator[Any]:
        yield self.histogram.family()
