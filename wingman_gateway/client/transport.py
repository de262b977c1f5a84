"""The seam between the client's protocol logic and the wire.

A transport only moves text frames: requests, replies, reconnecting and
rejoining live once, in ``GatewayClient``. WebSocket is the one transport
today; the HTTP bridge (long-poll/SSE) will be another ``IClientTransport``
picked here by URL scheme, without changing the client's API.
"""

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import urlsplit

from zope.interface import Attribute, Interface

from wingman_gateway.client.errors import ClientError

CLOSE_NORMAL = 1000


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
    ) -> IClientTransport: ...


def transport_for(
    url: str,
    receiver: ITransportReceiver,
    *,
    reactor: Any,
    ca_file: str | None,
    timeout: float,
) -> IClientTransport:
    """The transport that speaks ``url``'s scheme."""
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("ws", "wss"):
        from wingman_gateway.client.websocket import WebSocketTransport

        return WebSocketTransport(url, receiver, reactor=reactor, ca_file=ca_file, timeout=timeout)
    raise ClientError("CONNECTION_FAILED", f"unsupported URL scheme {scheme!r} in {url!r}")
