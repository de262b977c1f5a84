"""``/client/wingman.js``: the JavaScript client, served by every listener.

The module is public (it holds no secret), so any page may import it:
module scripts are fetched with CORS, hence ``Access-Control-Allow-Origin: *``.
"""

from __future__ import annotations

from pathlib import Path

from twisted.web.resource import Resource
from twisted.web.server import Request
from twisted.web.static import File

CLIENT_JS = Path(__file__).parent / "web" / "static" / "wingman.js"


class ClientScript(File):
    """The one file, as ``text/javascript``."""

    contentTypes = {**File.contentTypes, ".js": "text/javascript"}

    def render_GET(self, request: Request) -> bytes | int:
        request.setHeader(b"access-control-allow-origin", b"*")
        request.setHeader(b"cache-control", b"no-cache")
        return super().render_GET(request)


def client_resource() -> Resource:
    """``/client/``, holding only ``wingman.js``."""
    folder = Resource()
    folder.putChild(b"wingman.js", ClientScript(str(CLIENT_JS)))
    return folder
