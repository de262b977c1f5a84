"""A listener's Site: ``/health``, ``/stats`` and what the wiring adds (``/ws``, ``/bridge``)."""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping

from twisted.web.http import combinedLogFormatter
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from wingman_gateway.router import Router
from wingman_gateway.web.bounded import BoundedRequest
from wingman_gateway.web.clientscript import client_resource
from wingman_gateway.web.credential import stats_gate
from wingman_gateway.web.health import HealthResource, HealthSources, StatsResource
from wingman_gateway.web.index import IndexResource

# A bridge session secret in a query string (EventSource cannot send headers).
_SESSION_QUERY = re.compile(r"([?&]session=)[^&\s\"]*")


def _access_line(timestamp: str, request: Request) -> str:
    """The access log line, with session secrets blotted out."""
    return _SESSION_QUERY.sub(r"\1[redacted]", combinedLogFormatter(timestamp, request))


class GatewaySite(Site):
    """A listener's Site: request bodies are bounded before they are read."""

    requestFactory = BoundedRequest

    def __init__(self, root: Resource, router: Router, cors: Any) -> None:
        super().__init__(root, logFormatter=_access_line)
        # What BoundedRequest needs to refuse a body: the limit, the error,
        # CORS headers so a page can read the refusal, and the clock.
        self.router = router
        self.clock = router.clock
        self.cors = cors


def build_site(
    router: Router,
    health: HealthSources,
    children: Mapping[bytes, Resource],
    cors: Any = None,
    stats_check: Callable[[Request], Any] | None = None,
    scopes: Mapping[str, Any] | None = None,
) -> Site:
    """One Site per listener; every Site shares the one Router.

    ``children`` are the transports' resources (``/ws``, ``/bridge``);
    ``cors`` is the policy a refused body's answer follows (or None);
    ``stats_check`` guards ``/stats`` (default: node tokens when auth is on);
    ``scopes`` are the further reports ``/stats?scope=NAME`` gives.
    """
    if stats_check is None:
        stats_check = stats_gate(None, router.authenticator)
    root = Resource()
    root.putChild(b"", IndexResource(root))
    root.putChild(b"health", HealthResource(health))
    root.putChild(b"stats", StatsResource(router, stats_check, scopes))
    root.putChild(b"client", client_resource())  # /client/wingman.js
    for name, child in children.items():
        root.putChild(name, child)
    site = GatewaySite(root, router, cors)
    site.displayTracebacks = False
    site.noisy = False
    return site
