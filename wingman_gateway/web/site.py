"""A listener's Site: ``/health``, ``/stats`` and what the wiring adds (``/ws``, ``/bridge``)."""

from __future__ import annotations

from typing import Any, Callable, Mapping

from twisted.web.http import combinedLogFormatter
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from wingman_gateway.redact import redact_uri
from wingman_gateway.router import Router
from wingman_gateway.web.channel import GatewayChannel
from wingman_gateway.web.clientscript import client_resource
from wingman_gateway.web.credential import stats_gate
from wingman_gateway.web.folder import Folder
from wingman_gateway.web.head import IEarlyUpgrade
from wingman_gateway.web.health import HealthResource, HealthSources, StatsResource
from wingman_gateway.web.index import IndexResource
from wingman_gateway.web.request import GatewayRequest

# Default deadline for a complete request head, seconds (--header-timeout).
HEADER_TIMEOUT = 10.0
# Default deadline for a request's whole body once its head is in (--body-timeout).
BODY_TIMEOUT = 30.0


class _Redacted:
    """A request as the access log sees it: secrets in its URI and Referer blotted out
    (a bridge session may travel as ``?session=``, since EventSource cannot send headers)."""

    def __init__(self, request: Request) -> None:
        self._request = request
        self.uri = redact_uri(request.uri)

    def getHeader(self, name: bytes) -> Any:
        value = self._request.getHeader(name)
        if value is not None and name.lower() == b"referer":
            return redact_uri(value)
        return value

    def __getattr__(self, name: str) -> Any:
        return getattr(self._request, name)


def _access_line(timestamp: str, request: Request) -> str:
    """The access log line (combined format), with secrets blotted out."""
    line: str = combinedLogFormatter(timestamp, _Redacted(request))
    return line


class GatewaySite(Site):
    """A listener's Site: bounded bodies and heads, readable headers, the reserve."""

    requestFactory = GatewayRequest
    protocol = GatewayChannel  # type: ignore[assignment]  # HTTP/1.1 only

    def acceptableProtocols(self) -> list[bytes]:
        """ALPN: HTTP/1.1 only, the one protocol ``GatewayChannel`` speaks (even if h2 is installed)."""
        return [b"http/1.1"]

    def __init__(self, root: Resource, router: Router, cors: Any,
                 header_timeout: float = HEADER_TIMEOUT, body_timeout: float = BODY_TIMEOUT) -> None:
        # twisted.web's idle timer (reset on every read) is left off: the
        # channel's head and body deadlines cover the same waits, with one
        # timer per connection instead of two. (Set here: HTTPFactory sets
        # ``timeOut`` per instance, over anything the class says.)
        super().__init__(root, logFormatter=_access_line, timeout=None)
        # What BoundedRequest needs to refuse a body: the limit, the error,
        # CORS headers so a page can read the refusal, and the clock.
        self.router = router
        self.clock = router.clock
        self.cors = cors
        # What GatewayChannel needs: the head and body deadlines, the unsent-answer bound.
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.max_unsent = router.limits.max_buffer
        # What may take a connection over from its first read, by path (``web.head``).
        self.upgrades: dict[bytes, Any] = {}


def build_site(
    router: Router,
    health: HealthSources,
    children: Mapping[bytes, Resource],
    cors: Any = None,
    stats_check: Callable[[Request], Any] | None = None,
    scopes: Mapping[str, Any] | None = None,
    header_timeout: float = HEADER_TIMEOUT,
    body_timeout: float = BODY_TIMEOUT,
) -> Site:
    """One Site per listener; every Site shares the one Router.

    ``children`` are the transports' resources (``/ws``, ``/bridge``);
    ``cors`` is the policy a refused body's answer follows (or None);
    ``stats_check`` guards ``/stats`` (default: node tokens when auth is on);
    ``scopes`` are the further reports ``/stats?scope=NAME`` gives.
    """
    if stats_check is None:
        stats_check = stats_gate(None, router.authenticator)
    root = Folder()
    root.putChild(b"", IndexResource(root))
    root.putChild(b"health", HealthResource(health))
    root.putChild(b"stats", StatsResource(router, stats_check, scopes))
    root.putChild(b"client", client_resource())  # /client/wingman.js
    for name, child in children.items():
        root.putChild(name, child)
    site = GatewaySite(root, router, cors, header_timeout, body_timeout)
    site.upgrades = {b"/" + name: child for name, child in children.items() if IEarlyUpgrade.providedBy(child)}
    site.displayTracebacks = False
    site.noisy = False
    return site
