"""``/health`` (public) and ``/stats`` (guarded): what the gateway reports."""

from __future__ import annotations

import json
from typing import Any, Callable, Mapping

import attrs
from twisted.web.resource import Resource
from twisted.web.server import Request

from wingman_gateway import __version__
from wingman_gateway.router import Router
from wingman_gateway.web.headers import header

SERVICE = "wingman-gateway"


def json_response(request: Request, status: int, body: dict[str, Any], indent: int | None = None) -> bytes:
    """``body`` as the JSON answer, never cached (``indent``: for people reading it with curl)."""
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    if indent is None:
        return json.dumps(body).encode("utf-8")
    return (json.dumps(body, indent=indent) + "\n").encode("utf-8")


@attrs.frozen
class HealthSources:
    """Where ``/health`` takes its report from, each read when it is asked."""

    name: str
    auth_required: bool
    stats: Callable[[], dict[str, Any]]
    now_ms: Callable[[], int]
    # More sections (e.g. "discovery"), each made when /health is asked.
    sections: Mapping[str, Callable[[], Any]] = attrs.Factory(dict)
    # Why the gateway serves but not fully (e.g. its cluster link is down); None: healthy.
    degraded: Callable[[], str | None] = lambda: None
    # The web pages' origins that may read the report (--cors-origin): a page
    # that may use the gateway may ask it first how loaded it is.
    origins: Callable[[str], bool] = lambda origin: False

    def report(self) -> dict[str, Any]:
        return {
            "status": "healthy" if self.degraded() is None else "degraded",
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
        request.setHeader(b"vary", b"Origin")
        origin = header(request, "origin")
        if origin is not None and self.sources.origins(origin):
            request.setHeader(b"access-control-allow-origin", origin.encode("utf-8"))
        return json_response(request, 200, self.sources.report())


class StatsResource(Resource):
    """Nodes and rooms; guarded by ``check`` (``web.credential.stats_gate``)."""

    isLeaf = True

    def __init__(
        self,
        router: Router,
        check: Callable[[Request], Any],
        scopes: Mapping[str, Callable[[], dict[str, Any]]] | None = None,
    ) -> None:
        super().__init__()
        self.router = router
        self.check = check
        # ?scope=NAME: another report (e.g. "cluster": every gateway's nodes).
        self.scopes = dict(scopes or {})

    def render_GET(self, request: Request) -> bytes:
        router = self.router
        refusal = self.check(request)
        if refusal is not None:
            answer: bytes = refusal.answer(request)
            return answer
        scope = (request.args.get(b"scope") or [b"gateway"])[0].decode("utf-8", "replace")
        if scope != "gateway":
            if scope not in self.scopes:
                known = ", ".join(["gateway", *self.scopes])
                return json_response(
                    request,
                    400,
                    {"error": {"code": "INVALID_REQUEST", "message": f"unknown scope {scope[:40]!r} (known: {known})"}},
                )
            body = self.scopes[scope]()
            body["timestamp"] = router.now_ms()
            return json_response(request, 200, body)
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
