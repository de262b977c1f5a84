"""``GET /``: what this address serves, instead of "No Such Resource"."""

from __future__ import annotations

import json
from importlib import metadata

from twisted.web.resource import Resource
from twisted.web.server import Request

from wingman_gateway import __version__

# Where people read about the gateway when the package names no web address.
README = "README.rst of the wingman-gateway source (also its package description: pip show -v wingman-gateway)"


def documentation() -> str:
    """The package's documentation URL (Project-URL, else Home-page), else where the README is."""
    try:
        meta = metadata.metadata("wingman-gateway")
    except metadata.PackageNotFoundError:
        return README
    for entry in meta.get_all("Project-URL") or ():
        label, _, url = entry.partition(",")
        if label.strip().lower() in ("documentation", "homepage", "source") and url.strip():
            return url.strip()
    home = next(iter(meta.get_all("Home-page") or ()), None)
    return home if home and home != "UNKNOWN" else README


class IndexResource(Resource):
    """A small JSON map of the listener: the console when there is one, the endpoints, the docs."""

    isLeaf = True

    def __init__(self, root: Resource) -> None:
        super().__init__()
        self.root = root

    def render_GET(self, request: Request) -> bytes:
        served = self.root.children
        body: dict[str, object] = {"service": "wingman-gateway", "version": __version__}
        if b"console" in served:
            body["console"] = "/console/"
        body["endpoints"] = {
            path: f"/{path}" + ("/" if path == "bridge" else "")
            for path in ("ws", "bridge", "health", "stats") if path.encode() in served
        }
        body["documentation"] = documentation()
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return (json.dumps(body, indent=2) + "\n").encode("utf-8")
