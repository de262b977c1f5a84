"""Plain counts kept on the reactor thread, exposed through the library's metric families.

The library's metric objects take a lock on every update; the gateway
updates its counts from the reactor thread alone, many times per
message, so it keeps plain integers and hands them to ``prometheus_client``
as metric families when a scrape asks (the library's custom-collector way).
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Iterable

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

OTHER = "other"


class Tally:
    """Counts by one label, from a fixed set of values; unknown values count as ``other``."""

    __slots__ = ("name", "doc", "label", "counts", "shown")

    def __init__(self, name: str, doc: str, label: str, values: Iterable[str],
                 shown: dict[str, str] | None = None) -> None:
        self.name = name
        self.doc = doc
        self.label = label
        self.counts: dict[str, float] = dict.fromkeys(values, 0)
        self.shown = shown or {}  # value -> label value, where they differ

    def add(self, value: str, amount: float = 1) -> None:
        counts = self.counts
        if value in counts:
            counts[value] += amount
        else:
            counts[OTHER] = counts.get(OTHER, 0) + amount

    def family(self) -> CounterMetricFamily:
        family = CounterMetricFamily(self.name, self.doc, labels=[self.label])
        for value, count in self.counts.items():
            family.add_metric([self.shown.get(value, value)], count)
        return family


class Buckets:
    """A histogram: counts per upper bound, the sum and the count."""

    __slots__ = ("name", "doc", "bounds", "counts", "sum")

    def __init__(self, name: str, doc: str, bounds: tuple[float, ...]) -> None:
        self.name = name
        self.doc = doc
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def family(self) -> HistogramMetricFamily:
        cumulative, running = [], 0
        for bound, count in zip((*map(floatToGoString, self.bounds), "+Inf"), self.counts):
            running += count
            cumulative.append((bound, running))
        return HistogramMetricFamily(self.name, self.doc, buckets=cumulative, sum_value=self.sum)
