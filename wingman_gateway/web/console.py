"""``/console/``: the web console, static files shipped inside the package.

The page runs only its own files (a strict Content-Security-Policy: no
inline script or style, nothing from elsewhere) and talks to the gateway it
came from: ``/ws`` or ``/bridge/`` through ``/client/wingman.js``,
``/health``, ``/stats`` and ``/api/``. Files are read at each request (they
are small), so an upgraded package is served at once.
"""

from __future__ import annotations

import re
from pathlib import Path

from twisted.web.resource import Resource
from twisted.web.server import Request
from twisted.web.util import redirectTo

CONSOLE_DIR = Path(__file__).parent / "console"

TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".svg": b"image/svg+xml",
}

# Plain file names only: no folders, no dot files, nothing outside CONSOLE_DIR.
_FILE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*\.(html|js|css|svg)$")

# 'self' covers ws:/wss: to the same host (CSP level 3, as browsers implement it).
POLICY = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    b"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

HEADERS = {
    b"content-security-policy": POLICY,
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"no-referrer",
    b"x-frame-options": b"DENY",
    b"cache-control": b"no-cache",
}


def console_file(name: str) -> Path | None:
    """The console file called ``name`` (``""`` is the page), or None."""
    name = name or "index.html"
    if not _FILE_NAME.match(name):
        return None
    path = CONSOLE_DIR / name
    return path if path.is_file() else None


class ConsoleResource(Resource):
    """``/console/NAME``: one leaf for the console's files, each with the policy headers."""

    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        for header, value in HEADERS.items():
            request.setHeader(header, value)
        postpath = request.postpath or []
        if not postpath:  # /console without the slash: relative links need it
            return redirectTo(b"console/", request)
        path = console_file(postpath[0].decode("utf-8", "replace")) if len(postpath) == 1 else None
        if path is None:
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"no such console file\n"
        request.setHeader(b"content-type", TYPES[path.suffix])
        return path.read_bytes()


def console_resource() -> Resource:
    return ConsoleResource()
