"""``GET /``: what this address serves, instead of "No Such Resource"."""

from __future__ import annotations

from importlib import metadata

from twisted.web.resource import Resource
from twisted.web.server import Request

from wingman_gateway import __version__
from wingman_gateway.web.health import json_response

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
            return str(url).strip()
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
        body["endpoints"] = {name: path for name, path in ENDPOINTS.items() if name.encode() in served}
        admin = {name: path for name, path in ADMIN_ENDPOINTS.items() if name.encode() in served}
        if admin:
            body["admin"] = admin  # behind the admin credential
        body["documentation"] = documentation()
        return json_response(request, 200, body, indent=2)


# What a listener may serve, by its resource's name: where each is found.
ENDPOINTS = {
    "ws": "/ws",
    "bridge": "/bridge/",
    "health": "/health",
    "stats": "/stats",
    "client": "/client/wingman.js",
}
# What needs the admin credential.
ADMIN_ENDPOINTS = {"metrics": "/metrics", "api": "/api/"}
