"""``/health`` (public) and ``/stats`` (guarded): what the gateway reports."""

from __future__ import annotations

import json
from typing import Any, Callable, Mapping

import attrs
from twisted.web.resource import Resource
from twisted.web.server import Request

from wingman_gateway import __version__
from wingman_gateway.router import Router

SERVICE = "wingman-gateway"


def json_response(request: Request, status: int, body: dict[str, Any]) -> bytes:
    """``body`` as the JSON answer, never cached."""
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(body).encode("utf-8")


@attrs.frozen
class HealthSources:
    """Where ``/health`` takes its report from, each read when it is asked."""

    name: str
    auth_required: bool
    stats: Callable[[], dict[str, Any]]
    now_ms: Callable[[], int]
    # More sections (e.g. "discovery"), each made when /health is asked.
    sections: Mapping[str, Callable[[], Any]] = attrs.Factory(dict)

    def report(self) -> dict[str, Any]:
        return {
            "status": "healthy",
            "service": SERVICE,
            "version": __version__,
            "name": self.name,
            "auth": "required" if self.auth_required else "optional",
            "stats": self.stats(),
            "timestamp": self.now_ms(),
            **{key: section() for key, section in self.sections.items()},
        }


class HealthResource(Resource):
    """Public liveness report."""

    isLeaf = True

    def __init__(self, sources: HealthSources) -> None:
        super().__init__()
        self.sources = sources

    def render_GET(self, request: Request) -> bytes:
        return json_response(request, 200, self.sources.report())


class StatsResource(Resource):
    """Nodes and rooms; guarded by ``check`` (a node token when auth is on)."""

    isLeaf = True

    def __init__(self, router: Router, check: Callable[[Request], tuple[int, str, str] | None]) -> None:
        super().__init__()
        self.router = router
        self.check = check

    def render_GET(self, request: Request) -> bytes:
        router = self.router
        refusal = self.check(request)
        if refusal is not None:
            status, code, message = refusal
            return json_response(request, status, {"error": {"code": code, "message": message}})
        nodes = router.node_list()
        rooms = router.room_list()
        return json_response(
            request,
            200,
            {
                "gateway": dict(router.summary(), name=router.gateway_name, version=__version__),
                "nodes": {"totalNodes": len(nodes), "nodes": nodes},
                "groups": {"totalGroups": len(rooms), "groups": rooms},
                "timestamp": router.now_ms(),
            },
        )
