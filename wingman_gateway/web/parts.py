"""What a twisted.web request hangs on: its Site, its body, its transport.

twisted.web types these as optional or leaves them untyped (the channel's
``site`` is set by the Site that made it); read here, in one place, they
are what a rendering request always has.
"""

from __future__ import annotations

from typing import Any

from twisted.web.server import Request


def site_of(request: Request) -> Any:
    """The ``GatewaySite`` that made the request's channel."""
    return request.channel.site  # type: ignore[attr-defined]  # set by Site.buildProtocol


def body_of(request: Request) -> bytes:
    """The request body read so far (all of it, once rendering)."""
    content = request.content
    return content.read() if content is not None else b""


def transport_of(request: Request) -> Any:
    """The connection under the request (a TCP, TLS or Unix transport)."""
    return request.channel.transport
