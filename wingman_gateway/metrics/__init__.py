"""Prometheus metrics: one registry per gateway, filled by an event sink and read at scrape.

``GatewayMetrics`` owns a ``CollectorRegistry`` of its own (never the
library's global one), so several gateways in one process stay apart. Its
``sink`` subscribes to the gateway's ``Events``; gauges are read from the
gateway at scrape time (``collector``); the process collectors add CPU,
memory and open files. ``resource()`` serves it with the library's own
twisted.web resource.
"""

from __future__ import annotations

from wingman_gateway.metrics.registry import GatewayMetrics

__all__ = ["GatewayMetrics"]
