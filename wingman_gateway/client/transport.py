"""The seam between the client's protocol logic and the wire.

A transport only moves text frames: requests, replies, reconnecting and
rejoining live once, in ``GatewayClient``. ``choose.transport_for`` picks the
transport: ``websocket``, ``http`` (the HTTP bridge: SSE, falling back to
long polling) or ``auto`` (WebSocket, falling back to HTTP), by name or by
the URL's scheme (ws/wss: auto, http/https: HTTP).
"""

from __future__ import annotations

from typing import Any, Protocol

from zope.interface import Attribute, Interface


from wingman_gateway.protocol.runtime import CLOSE_NORMAL as CLOSE_NORMAL
from wingman_gateway.protocol.urls import (  # re-exported for the client's modules
    TRANSPORTS as TRANSPORTS,
    as_http_url as as_http_url,
    as_websocket_url as as_websocket_url,
    transport_kind as transport_kind,
)



class ITransportReceiver(Interface):
    """What a transport reports to, once it is open."""

    def text_received(text: str) -> None:
        """One whole frame (one JSON envelope) arrived."""

    def connection_lost(code: int | None, reason: str) -> None:
        """The open connection is gone (``code`` is the close status, if any)."""


class IClientTransport(Interface):
    """One connection to a gateway, used once: opened, used, closed."""

    url = Attribute("The gateway URL this transport connects to.")

    def open() -> Any:
        """Connect; a Deferred that fires (None) once text can be sent.

        It fails with ``ClientError`` (``CONNECTION_FAILED``, ``TLS_ERROR``);
        cancelling it abandons the attempt. ``connection_lost`` is reported
        only for a connection that opened.
        """

    def send_text(text: str) -> None:
        """Queue one envelope for the gateway; never blocks."""

    def close(code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Close (politely where the wire allows); loss is then reported."""


class TransportFactory(Protocol):
    """Makes the transport for ``url``; the client calls it once per attempt."""

    def __call__(
        self,
        url: str,
        receiver: ITransportReceiver,
        *,
        reactor: Any,
        ca_file: str | None,
        timeout: float,
        kind: str | None = None,
        tor_socks: str | None = None,
    ) -> IClientTransport: ...
