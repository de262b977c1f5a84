"""``Authorization: Bearer`` on every HTTP endpoint, read in one place."""

from __future__ import annotations

from twisted.web.server import Request

from wingman_gateway.web.headers import header

CHALLENGE = b'Bearer realm="wingman-gateway"'


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header, or None."""
    scheme, _, value = (header(request, "authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()
