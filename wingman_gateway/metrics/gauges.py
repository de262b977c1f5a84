"""Gauges read from the gateway when Prometheus scrapes, so they cost nothing in between."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

import attrs
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from wingman_gateway.metrics.sink import PREFIX, TRANSPORTS


@attrs.frozen
class GaugeSources:
    """Where the gauges are read from, each called at scrape time."""

    transports: Callable[[], Iterable[str]]  # the transport name of every open connection
    nodes: Callable[[], int]
    rooms: Callable[[], int]
    bridge_sessions: Callable[[], int]
    version: str
    name: str


class GatewayGauges(Collector):
    """Connections by transport, nodes, rooms, open bridge sessions, build info."""

    def __init__(self, sources: GaugeSources) -> None:
        self.sources = sources

    def collect(self) -> Iterator[Any]:
        sources = self.sources
        counts = dict.fromkeys(TRANSPORTS, 0)
        for name in sources.transports():
            counts[name] = counts.get(name, 0) + 1
        connections = GaugeMetricFamily(
            PREFIX + "connections", "Open client connections, by transport", labels=["transport"]
        )
        for name, count in counts.items():
            connections.add_metric([name], count)
        yield connections
        yield GaugeMetricFamily(PREFIX + "nodes", "Registered nodes", value=sources.nodes())
        yield GaugeMetricFamily(PREFIX + "rooms", "Rooms", value=sources.rooms())
        yield GaugeMetricFamily(
            PREFIX + "bridge_sessions", "Open HTTP bridge sessions", value=sources.bridge_sessions()
        )
        info = GaugeMetricFamily(
            PREFIX + "build_info", "The gateway's version and name (always 1)",
            labels=["version", "name"],
        )
        info.add_metric([sources.version, sources.name], 1)
        yield info
