"""The server API (``/api/*``): JSON over HTTP for backends and scripts that are not nodes.

Every call needs the admin credential (``web.credential``). Errors carry
the protocol's codes with the HTTP status of ``errors.HTTP_STATUS``, as
``{"error": {"code", "message", "details"?}}``. Every answered call is
reported as an ``api_call`` event (for the audit log), what an
administrator did as ``admin_disconnect`` or ``admin_close``.
"""

from __future__ import annotations

import json
from typing import Any, Callable
from urllib.parse import unquote

from twisted.internet import defer
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from wingman_gateway import errors
from wingman_gateway.addresses import address_text
from wingman_gateway.admin import Admin
from wingman_gateway.envelope import nesting_depth
from wingman_gateway.errors import HTTP_STATUS, GatewayError
from wingman_gateway.events import Events
from wingman_gateway.web.credential import AdminCredential, Gate, admin_gate
from wingman_gateway.web.health import json_response

Route = Callable[[Request, list[str], dict[str, Any]], tuple[int, Any]]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def read_body(request: Request, max_depth: int) -> dict[str, Any]:
    """The request's JSON object (an empty body is an empty object)."""
    raw = request.content.read() if request.content is not None else b""
    if not raw.strip():
        return {}
    try:
        text = raw.decode("utf-8")
        if nesting_depth(text) > max_depth:
            raise GatewayError(errors.INVALID_MESSAGE, f"JSON nested deeper than {max_depth} levels")
        body = json.loads(text, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise GatewayError(errors.INVALID_MESSAGE, "request body is not valid JSON")
    if not isinstance(body, dict):
        raise GatewayError(errors.INVALID_MESSAGE, "request body must be a JSON object")
    return body


def peer_of(request: Request) -> str:
    return address_text(request.getClientAddress())


class ApiResource(Resource):
    """``/api/...``: one leaf that routes by method and path."""

    isLeaf = True

    def __init__(self, admin: Admin, credential: AdminCredential | None, events: Events) -> None:
        super().__init__()
        self.admin = admin
        self.credential = credential
        self.gate: Gate = admin_gate(credential)
        self.events = events
        self.routes: dict[tuple[bytes, str], Route] = {
            (b"POST", "publish"): self._publish,
            (b"POST", "broadcast"): self._broadcast,
            (b"GET", "rooms"): self._rooms,
            (b"GET", "rooms/*/members"): self._members,
            (b"POST", "rooms/*/close"): self._close,
            (b"GET", "nodes/*"): self._node,
            (b"POST", "nodes/*/disconnect"): self._disconnect,
        }

    def render(self, request: Request) -> bytes:
        refusal = self.gate(request)
        if refusal is not None:
            refused = refusal.answer(request)
            self._report(request, refusal.status, admin=None)
            return refused
        segments = [unquote(part.decode("utf-8", "replace")) for part in request.postpath or ()]
        if segments and segments[-1] == "":
            segments.pop()
        shape = "/".join("*" if 0 < i < 2 and segments[0] in ("rooms", "nodes") else part
                         for i, part in enumerate(segments))
        route = self.routes.get((request.method, shape))
        try:
            if route is None:
                status, answer = self._unrouted(request, shape)
            else:
                body = read_body(request, self.admin.router.limits.max_depth)
                status, answer = route(request, segments, body)
        except GatewayError as error:
            status, answer = HTTP_STATUS.get(error.code, 400), {"error": error.payload()}
        if isinstance(answer, defer.Deferred):  # a publish: answered once it is done
            answer.addCallback(lambda done: self._finish(request, status, done))
            return NOT_DONE_YET  # type: ignore[return-value]
        return self._answer(request, status, answer)

    def _answer(self, request: Request, status: int, answer: Any) -> bytes:
        self._report(request, status, admin=self._admin_id())
        return json_response(request, status, answer)

    def _finish(self, request: Request, status: int, answer: Any) -> None:
        data = self._answer(request, status, answer)
        if not request.finished and not getattr(request, "_disconnected", False):
            request.write(data)
            request.finish()

    def _unrouted(self, request: Request, shape: str) -> tuple[int, Any]:
        methods = sorted({method.decode() for method, known in self.routes if known == shape})
        if methods:
            request.setHeader(b"allow", ", ".join(methods).encode())
            return 405, {"error": {"code": errors.INVALID_REQUEST,
                                   "message": f"use {' or '.join(methods)} here"}}
        path = request.path.decode("ascii", "replace")[:200]
        return 404, {"error": {"code": errors.INVALID_REQUEST, "message": f"no API endpoint {path}"}}

    def _report(self, request: Request, status: int, admin: str | None) -> None:
        self.events.emit(
            "api_call", peer=peer_of(request), admin=admin,
            method=request.method.decode("ascii", "replace"),
            path=request.path.decode("ascii", "replace")[:200], status=status,
        )

    # -- endpoints ----------------------------------------------------------

    def _publish(self, request: Request, segments: list[str], body: dict[str, Any]) -> tuple[int, Any]:
        if "message" not in body:
            raise GatewayError(errors.INVALID_REQUEST, "'message' is required")
        published = self.admin.publish([body.get("room")], body["message"])
        return 200, published.addCallback(lambda results: results[0])

    def _broadcast(self, request: Request, segments: list[str], body: dict[str, Any]) -> tuple[int, Any]:
        rooms = body.get("rooms")
        if not isinstance(rooms, list) or not rooms:
            raise GatewayError(errors.INVALID_REQUEST, "'rooms' must be a non-empty list")
        if "message" not in body:
            raise GatewayError(errors.INVALID_REQUEST, "'message' is required")
        published = self.admin.publish(rooms, body["message"])
        return 200, published.addCallback(
            lambda results: {"rooms": results, "recipients": sum(r["recipients"] for r in results)}
        )

    def _rooms(self, request: Request, segments: list[str], body: dict[str, Any]) -> tuple[int, Any]:
        rooms = self.admin.rooms()
        return 200, {"totalGroups": len(rooms), "groups": rooms}

    def _members(self, request: Request, segments: list[str], body: dict[str, Any]) -> tuple[int, Any]:
        return 200, self.admin.members(segments[1])

    def _node(self, request: Request, segments: list[str], body: dict[str, Any]) -> tuple[int, Any]:
        return 200, self.admin.node_report(self.admin.node(segments[1]))

    def _disconnect(self, request: Request, segments: list[str], body: dict[str, Any]) -> tuple[int, Any]:
        node, reason = self.admin.disconnect(segments[1], body.get("reason"))
        self.events.emit(
            "admin_disconnect", peer=peer_of(request), admin=self._admin_id(),
            node_id=node.node_id, name=node.name, reason=reason,
        )
        return 200, {"nodeId": node.node_id, "name": node.name, "disconnected": True}

    def _close(self, request: Request, segments: list[str], body: dict[str, Any]) -> tuple[int, Any]:
        room, members, reason = self.admin.close_room(segments[1], body.get("reason"))
        self.events.emit(
            "admin_close", peer=peer_of(request), admin=self._admin_id(),
            room=room.name, members=len(members), reason=reason,
        )
        return 200, {"groupId": room.id, "groupName": room.name, "members": len(members),
                     "closed": True}

    def _admin_id(self) -> str | None:
        return self.credential.id if self.credential is not None else None
