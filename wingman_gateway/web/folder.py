"""A resource that only holds others (``/``, ``/bridge/``): itself it is 404 for every method."""

from __future__ import annotations

from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import Request

from wingman_gateway import errors
from wingman_gateway.envelope import encode


class Folder(Resource):
    """Holds child resources; a request for the folder itself is ``404`` (HEAD included,
    which twisted.web would otherwise turn into a missing ``render_GET`` and a 500)."""

    def render(self, request: Request) -> Any:
        request.setResponseCode(404)
        request.setHeader(b"content-type", b"application/json")
        path = request.path.decode("latin-1")[:200]
        return encode({"type": "error", "payload": {"code": errors.INVALID_REQUEST,
                                                    "message": f"nothing at {path!r}"}})
