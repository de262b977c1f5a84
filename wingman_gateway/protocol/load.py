"""Choosing among one cluster's gateways by their ``/health`` reports (no I/O).

Both Python clients ask every gateway's ``/health`` at once and try them in
this order: healthy before ``degraded``, fewest ``totalNodes`` first, and a
gateway that did not answer last (still tried, in the order given).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence, TypeGuard

SERVICE = "wingman-gateway"


def is_gateway_report(report: Any) -> TypeGuard[dict[str, Any]]:
    """Whether a decoded ``/health`` body is a Wingman Gateway's."""
    return isinstance(report, dict) and report.get("service") == SERVICE


def _rank(report: Mapping[str, Any] | None) -> tuple[int, int]:
    if report is None:
        return (2, 0)
    given = report.get("stats")
    stats: Mapping[str, Any] = given if isinstance(given, dict) else {}
    nodes = stats.get("totalNodes")
    load = nodes if isinstance(nodes, int) else 0
    return (0 if report.get("status") == "healthy" else 1, load)


def by_load(urls: Sequence[str], reports: Sequence[Mapping[str, Any] | None]) -> list[str]:
    """``urls`` best first, given each one's ``/health`` report (None: no answer)."""
    order = sorted(range(len(urls)), key=lambda index: (*_rank(reports[index]), index))
    return [urls[index] for index in order]
