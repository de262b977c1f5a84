"""The /health probe: is a wingman-gateway answering at this address?

Shared by the ``wingman`` commands and by discovery (which probes tailnet
devices), so it lives with the client library, not the command line.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from twisted.internet.defer import Deferred
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
