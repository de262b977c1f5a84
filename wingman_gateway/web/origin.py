"""Which web pages may use the gateway: the bridge's ``--cors-origin`` list, for ``/ws`` too.

A request without ``Origin`` is not from a page (programs, the CLI, agents)
and is allowed. A page is allowed when its origin is listed, or when it is
the gateway's own: the scheme, host and port the client addressed (its
``Host`` header), as a page the gateway served would send.
"""

from __future__ import annotations

from typing import Callable
from urllib.parse import urlsplit

from twisted.web.server import Request

from wingman_gateway.web.headers import header

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _normal(scheme: str, netloc: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of ``scheme://netloc`` with the default port filled in."""
    try:
        parts = urlsplit(f"{scheme}://{netloc}")
        port = parts.port
    except ValueError:
        return None
    if parts.hostname is None or parts.path or parts.query or parts.username is not None:
        return None
    return scheme, parts.hostname.lower().rstrip("."), port or _DEFAULT_PORTS.get(scheme, 0)


def same_origin(origin: str, request: Request) -> bool:
    """Whether ``origin`` is this gateway as the client addressed it."""
    host = header(request, "host")
    scheme, sep, rest = origin.partition("://")
    if not host or not sep or scheme.lower() not in ("http", "https"):
        return False
    own = "https" if request.isSecure() else "http"
    mine = _normal(own, host)
    theirs = _normal(scheme.lower(), rest)
    return mine is not None and mine == theirs


def origin_refusal(allows: Callable[[str], bool], request: Request) -> str | None:
    """None when the request may go on; else why its page may not use the gateway."""
    origin = header(request, "origin")
    if origin is None or allows(origin) or same_origin(origin, request):
        return None
    return (
        f"origin {origin[:200]!r} is not allowed to use this gateway "
        "(pages from other origins need --cors-origin)"
    )
