"""The HTTP side of a listener: /health, /stats and the /ws upgrade."""

from __future__ import annotations

import json
from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from wingman_gateway import __version__
from wingman_gateway.auth import AuthError
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
                "stats": self.router.summary(),
                "timestamp": self.router.now_ms(),
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


def build_site(router: Router, websocket_factory: GatewayWebSocketFactory) -> Site:
    """One Site per listener; every Site shares the one Router."""
    root = Resource()
    root.putChild(b"health", HealthResource(router))
    root.putChild(b"stats", StatsResource(router))
    root.putChild(b"ws", websocket_resource(websocket_factory))
    site = Site(root)
    site.displayTracebacks = False
    site.noisy = False
    return site
