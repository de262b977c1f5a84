"""``/client/wingman.js``: the JavaScript client, served by every listener.

The module is public (it holds no secret), so any page may import it:
module scripts are fetched with CORS, hence ``Access-Control-Allow-Origin: *``.
It is read at each request (it is small), so an upgraded file is served at once.
"""

from __future__ import annotations

from pathlib import Path

from twisted.web.resource import Resource
from twisted.web.server import Request

CLIENT_JS = Path(__file__).parent / "static" / "wingman.js"


class ClientScript(Resource):
    """The one file, as ``text/javascript``."""

    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/javascript")
        request.setHeader(b"access-control-allow-origin", b"*")
        request.setHeader(b"cache-control", b"no-cache")
        return CLIENT_JS.read_bytes()


def client_resource() -> Resource:
    """``/client/``, holding only ``wingman.js``."""
    folder = Resource()
    folder.putChild(b"wingman.js", ClientScript())
    return folder
