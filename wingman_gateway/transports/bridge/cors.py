"""Cross-origin access to the bridge for web pages (``--cors-origin``).

Only origins on the list get CORS headers, and a request that carries any
other ``Origin`` is refused outright: a page from elsewhere can neither read
the bridge's answers nor make the gateway act for it.
"""

from __future__ import annotations

import attrs
from twisted.web.server import Request

from wingman_gateway.web.headers import header
from wingman_gateway.web.origin import PageHosts, host_refusal, same_origin

ALLOW_METHODS = b"GET, POST, OPTIONS"
# Everything a bridge client sends beyond the CORS-safelisted headers.
ALLOW_HEADERS = b"Authorization, Content-Type, Last-Event-ID, X-Wingman-Session"
# Retry-After is not safelisted: a page reads it only when exposed.
EXPOSE_HEADERS = b"Retry-After"
MAX_AGE = b"600"


@attrs.frozen
class CorsPolicy:
    """The origins (``scheme://host[:port]``, or ``*``) allowed to use the bridge."""

    origins: frozenset[str] = frozenset()
    # Host names under which the gateway's own pages are trusted (web/origin.py).
    hosts: PageHosts = PageHosts()

    def allows(self, origin: str) -> bool:
        return "*" in self.origins or origin in self.origins

    def admit(self, request: Request) -> bool:
        """Add CORS headers for an allowed Origin; False if its Origin is refused.

        A request without ``Origin`` (not from a cross-origin page) passes,
        and so does one from the gateway's own origin (its console's page)
        under a host it trusts.
        """
        request.setHeader(b"vary", b"Origin")
        origin = header(request, "origin")
        if origin is None:
            return True
        if not self.allows(origin):
            return same_origin(origin, request) and host_refusal(request, self.hosts) is None
        if same_origin(origin, request):
            return True
        request.setHeader(b"access-control-allow-origin", origin.encode("utf-8"))
        request.setHeader(b"access-control-expose-headers", EXPOSE_HEADERS)
        return True

    def refusal(self, request: Request) -> str:
        """Why ``admit`` refused this request."""
        origin = header(request, "origin") or ""
        refused = host_refusal(request, self.hosts) if same_origin(origin, request) else None
        return refused or f"origin {origin[:200]!r} is not allowed to use this gateway's HTTP bridge"

    def preflight(self, request: Request) -> None:
        """Answer an allowed ``OPTIONS`` preflight (after ``admit``)."""
        request.setResponseCode(204)
        request.setHeader(b"access-control-allow-methods", ALLOW_METHODS)
        request.setHeader(b"access-control-allow-headers", ALLOW_HEADERS)
        request.setHeader(b"access-control-max-age", MAX_AGE)
