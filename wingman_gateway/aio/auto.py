"""``transport="auto"`` on asyncio: WebSocket first, the HTTP bridge when the upgrade fails.

Each connection attempt tries WebSocket again (the network may have
changed); a TLS failure is final, never a reason to try HTTP.
"""

from __future__ import annotations

import asyncio
import logging

from wingman_gateway.aio.http import HttpTransport
from wingman_gateway.aio.websocket import WebSocketTransport
from wingman_gateway.protocol.errors import CONNECTION_FAILED, NOT_CONNECTED, ClientError
from wingman_gateway.protocol.runtime import CLOSE_NORMAL, Receiver, Transport
from wingman_gateway.protocol.urls import as_http_url, as_websocket_url

log = logging.getLogger("wingman_gateway.aio.auto")

# Share of the open timeout the WebSocket attempt may take, leaving the rest
# for HTTP when a blocked upgrade hangs instead of being refused.
WEBSOCKET_SHARE = 0.5


class AutoTransport:
    """Whichever of WebSocket or the HTTP bridge opens, in that order."""

    def __init__(
        self, url: str, receiver: Receiver, *, ca_file: str | None = None, timeout: float = 10.0,
        tor_socks: str | None = None,
    ) -> None:
        self.url = url
        self._receiver = receiver
        self._ca_file = ca_file
        self._tor_socks = tor_socks
        self._timeout = timeout
        self.chosen: Transport | None = None

    async def open(self) -> None:
        share = self._timeout * WEBSOCKET_SHARE
        websocket = WebSocketTransport(
            as_websocket_url(self.url), self._receiver, ca_file=self._ca_file, timeout=share, tor_socks=self._tor_socks,
        )
        try:
            await asyncio.wait_for(websocket.open(), share)
            self.chosen = websocket
            return
        except ClientError as error:
            if error.code != CONNECTION_FAILED:
                raise  # TLS errors are not a blocked upgrade
            why = error.message
        except TimeoutError:
            why = "no answer in time"
        log.info("WebSocket to %s failed (%s): trying the HTTP bridge", self.url, why)
        bridge = HttpTransport(
            as_http_url(self.url), self._receiver, ca_file=self._ca_file, timeout=self._timeout,
            tor_socks=self._tor_socks,
        )
        await bridge.open()
        self.chosen = bridge

    def send_text(self, text: str) -> None:
        if self.chosen is None:
            raise ClientError(NOT_CONNECTED, "the connection is not open")
        self.chosen.send_text(text)

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        if self.chosen is not None:
            self.chosen.close(code, reason)
