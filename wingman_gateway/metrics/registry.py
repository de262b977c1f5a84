"""One gateway's metrics: its registry, the sink, the gauges, the lag probe, the resource."""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import choose_encoder
from twisted.internet.interfaces import IReactorTime
from twisted.web.resource import Resource
from twisted.web.server import Request

from wingman_gateway.metrics.gauges import GatewayGauges, GaugeSources
from wingman_gateway.metrics.lag import LoopLag
from wingman_gateway.metrics.sink import MetricsSink


class GatewayMetrics:
    """Everything ``/metrics`` shows for one gateway."""

    def __init__(self, sources: GaugeSources, clock: IReactorTime) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.sink = MetricsSink()
        self.lag = LoopLag(clock)
        for collector in (self.sink, self.lag, GatewayGauges(sources)):
            self.registry.register(collector)

    def resource(self, gate: Any = None) -> Resource:
        """``/metrics``, in the format the scraper asks for; ``gate`` guards it (or None)."""
        return MetricsResource(self.registry, gate)


class MetricsResource(Resource):
    """The registry in Prometheus' exposition format, made by the library's encoders.

    Rendered on the reactor thread: the gauges read the gateway's state,
    which only the reactor may touch.
    """

    isLeaf = True

    def __init__(self, registry: CollectorRegistry, gate: Any = None) -> None:
        super().__init__()
        self.registry = registry
        self.gate = gate

    def render_GET(self, request: Request) -> bytes:
        if self.gate is not None:
            refusal = self.gate(request)
            if refusal is not None:
                answer: bytes = refusal.answer(request)
                return answer
        encoder, content_type = choose_encoder(request.getHeader("accept") or "")
        request.setHeader(b"content-type", content_type.encode("ascii"))
        request.setHeader(b"cache-control", b"no-store")
        return encoder(self.registry)
