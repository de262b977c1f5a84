"""The HTTP side of a listener: /health, /stats, the /ws upgrade and /bridge."""

from __future__ import annotations

import json
import re
from typing import Any

from twisted.web.http import combinedLogFormatter
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from wingman_gateway import __version__
from wingman_gateway.auth import AuthError
from wingman_gateway.bridge.bounded import BoundedRequest
from wingman_gateway.bridge.resources import bridge_resource
from wingman_gateway.bridge.session import Bridge
from wingman_gateway.index import IndexResource
from wingman_gateway.router import Router
from wingman_gateway.websocket import GatewayWebSocketFactory, websocket_resource

SERVICE = "wingman-gateway"


def _json(request: Request, status: int, body: dict[str, Any]) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(body).encode("utf-8")


class HealthResource(Resource):
    """Public liveness report."""

    isLeaf = True

    def __init__(self, router: Router) -> None:
        super().__init__()
        self.router = router

    def render_GET(self, request: Request) -> bytes:
        return _json(
            request,
            200,
            {
                "status": "healthy",
                "service": SERVICE,
                "version": __version__,
                "name": self.router.gateway_name,
                "auth": "required" if self.router.authenticator.required else "optional",
                "stats": self.router.summary(),
                "timestamp": self.router.now_ms(),
                **{key: report() for key, report in self.router.reports.items()},
            },
        )


class StatsResource(Resource):
    """Nodes and rooms; needs a token (``Authorization: Bearer``) when auth is on."""

    isLeaf = True

    def __init__(self, router: Router) -> None:
        super().__init__()
        self.router = router

    def render_GET(self, request: Request) -> bytes:
        router = self.router
        if router.authenticator.required:
            header = request.getHeader("authorization") or ""
            scheme, _, token = header.partition(" ")
            try:
                if scheme.lower() != "bearer":
                    raise AuthError("token required")
                router.authenticator.authenticate(token.strip())
            except AuthError as refusal:
                request.setHeader(b"www-authenticate", b'Bearer realm="wingman-gateway"')
                return _json(
                    request,
                    401,
                    {"error": {"code": "AUTH_FAILED", "message": f"authentication failed: {refusal}"}},
                )
        nodes = router.node_list()
        rooms = router.room_list()
        return _json(
            request,
            200,
            {
                "gateway": dict(router.summary(), name=router.gateway_name, version=__version__),
                "nodes": {"totalNodes": len(nodes), "nodes": nodes},
                "groups": {"totalGroups": len(rooms), "groups": rooms},
                "timestamp": router.now_ms(),
            },
        )


# A bridge session secret in a query string (EventSource cannot send headers).
_SESSION_QUERY = re.compile(r"([?&]session=)[^&\s\"]*")


def _access_line(timestamp: str, request: Request) -> str:
    """The access log line, with session secrets blotted out."""
    return _SESSION_QUERY.sub(r"\1[redacted]", combinedLogFormatter(timestamp, request))


class GatewaySite(Site):
    """A listener's Site: request bodies are bounded before they are read."""

    requestFactory = BoundedRequest

    def __init__(self, root: Resource, router: Router, bridge: Bridge | None) -> None:
        super().__init__(root, logFormatter=_access_line)
        # What BoundedRequest needs to refuse a body: the limit, the error,
        # CORS headers so a page can read the refusal, and the clock.
        self.router = router
        self.clock = router.clock
        self.cors = bridge.cors if bridge is not None else None


def build_site(
    router: Router, websocket_factory: GatewayWebSocketFactory, bridge: Bridge | None = None
) -> Site:
    """One Site per listener; every Site shares the one Router (and bridge)."""
    root = Resource()
    root.putChild(b"", IndexResource(root))
    root.putChild(b"health", HealthResource(router))
    root.putChild(b"stats", StatsResource(router))
    root.putChild(b"ws", websocket_resource(websocket_factory))
    if bridge is not None:
        root.putChild(b"bridge", bridge_resource(bridge))
    site = GatewaySite(root, router, bridge)
    site.displayTracebacks = False
    site.noisy = False
    return site
