"""The /health probe: is a wingman-gateway answering at this address?

Shared by the ``wingman`` commands and by discovery (which probes tailnet
devices), so it lives with the client library, not the command line.
"""

from __future__ import annotations

import json
from typing import Any, Sequence
from urllib.parse import urlsplit, urlunsplit

from twisted.internet.defer import Deferred, DeferredList, ensureDeferred
from twisted.web.client import Agent, readBody

DEFAULT_PORT = 3000


class HealthError(Exception):
    """The gateway did not answer, or not as a healthy gateway."""


def health_url(target: str) -> str:
    """The /health URL for a gateway given as host[:port], http(s):// or ws(s):// URL."""
    if "://" not in target:
        target = "http://" + target
    parts = urlsplit(target)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    netloc = parts.netloc if parts.port else f"{parts.netloc}:{DEFAULT_PORT}"
    return urlunsplit((scheme, netloc, "/health", "", ""))


async def fetch_health(reactor: Any, url: str, timeout: float = 5.0) -> dict[str, Any]:
    """GET /health; the report, or HealthError saying why not."""
    agent = Agent(reactor, connectTimeout=timeout)
    request: Deferred[Any] = agent.request(b"GET", url.encode("ascii"))
    request.addTimeout(timeout, reactor)
    try:
        response = await request
        body = await readBody(response)
    except Exception as error:  # connection refused, timeout, TLS …
        raise HealthError(f"{url}: {error.__class__.__name__}: {error}") from None
    if response.code != 200:
        raise HealthError(f"{url}: HTTP {response.code}")
    try:
        report = json.loads(body)
    except ValueError:
        raise HealthError(f"{url}: not a JSON health report") from None
    if not isinstance(report, dict) or report.get("service") != "wingman-gateway":
        raise HealthError(f"{url}: not a wingman-gateway")
    return report


async def rank_by_load(reactor: Any, urls: Sequence[str], timeout: float) -> list[str]:
    """``urls`` (gateways of one cluster) best first: healthy and least loaded.

    Each gateway's ``/health`` is asked at once; the fewest ``totalNodes``
    wins, a ``degraded`` gateway comes after the healthy ones and one that
    does not answer comes last (it is still tried, in the given order).
    """
    probes = [ensureDeferred(fetch_health(reactor, health_url(url), timeout)) for url in urls]
    results = await DeferredList(probes, consumeErrors=True)

    def rank(index: int) -> tuple[int, int, int]:
        answered, report = results[index]
        if not answered:
            return (2, 0, index)
        stats = report.get("stats") if isinstance(report.get("stats"), dict) else {}
        load = stats.get("totalNodes") if isinstance(stats.get("totalNodes"), int) else 0
        return (0 if report.get("status") == "healthy" else 1, load, index)

    return [urls[index] for index in sorted(range(len(urls)), key=rank)]
