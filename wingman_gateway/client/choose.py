"""Which ``IClientTransport`` speaks to a URL: the one place that knows them all."""

from __future__ import annotations

from typing import Any

from wingman_gateway.client.auto import AutoTransport
from wingman_gateway.client.errors import ClientError
from wingman_gateway.client.http import HttpTransport
from wingman_gateway.client.transport import (
    TRANSPORTS,
    IClientTransport,
    ITransportReceiver,
    as_http_url,
    as_websocket_url,
    transport_kind,
)
from wingman_gateway.client.websocket import WebSocketTransport


def transport_for(
    url: str,
    receiver: ITransportReceiver,
    *,
    reactor: Any,
    ca_file: str | None,
    timeout: float,
    kind: str | None = None,
    tor_socks: str | None = None,
) -> IClientTransport:
    """The transport ``kind`` names, or the default for ``url``'s scheme (ws/wss: ``auto``)."""
    kind = transport_kind(url, kind)
    options: dict[str, Any] = {"reactor": reactor, "ca_file": ca_file, "timeout": timeout, "tor_socks": tor_socks}
    if kind == "websocket":
        return WebSocketTransport(as_websocket_url(url), receiver, **options)
    if kind == "http":
        return HttpTransport(as_http_url(url), receiver, **options)
    if kind == "auto":
        as_http_url(url)  # refuses a scheme neither transport speaks
        return AutoTransport(url, receiver, **options)
    raise ClientError(
        "CONNECTION_FAILED", f"unknown transport {kind!r} (expected one of {', '.join(TRANSPORTS)})"
    )
