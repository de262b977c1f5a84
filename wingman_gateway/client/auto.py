"""``transport="auto"``: WebSocket first, the HTTP bridge when the upgrade fails.

Corporate proxies often refuse or break the WebSocket upgrade while plain
HTTP(S) passes. Each connection attempt tries WebSocket again (the network
may have changed); a TLS failure is final, never a reason to try HTTP.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from zope.interface import implementer

from wingman_gateway.client.errors import CONNECTION_FAILED, ClientError
from wingman_gateway.client.http import HttpTransport
from wingman_gateway.client.transport import (
    CLOSE_NORMAL,
    IClientTransport,
    ITransportReceiver,
    as_http_url,
    as_websocket_url,
)
from wingman_gateway.client.websocket import WebSocketTransport
from wingman_gateway.logs import get_logger

log = get_logger("wingman_gateway.client.auto")

# Share of the open timeout the WebSocket attempt may take, leaving the rest
# for HTTP when a blocked upgrade hangs instead of being refused.
WEBSOCKET_SHARE = 0.5


@implementer(IClientTransport)
class AutoTransport:
    """Whichever of WebSocket or the HTTP bridge opens, in that order."""

    def __init__(
        self,
        url: str,
        receiver: ITransportReceiver,
        *,
        reactor: Any,
        ca_file: str | None = None,
        timeout: float = 10.0,
        tor_socks: str | None = None,
    ) -> None:
        self.url = url
        self._receiver = receiver
        self._reactor = reactor
        self._ca_file = ca_file
        self._tor_socks = tor_socks
        self._timeout = timeout
        self.chosen: IClientTransport | None = None
        self._attempt: Deferred[None] | None = None
        self._opening: Deferred[None] | None = None
        self._cancelled = False

    def open(self) -> Deferred[None]:
        if self._opening is not None:
            raise RuntimeError("a transport is opened once")
        self._opening = Deferred(self._cancel_open)
        self.chosen = WebSocketTransport(
            as_websocket_url(self.url), self._receiver, reactor=self._reactor,
            ca_file=self._ca_file, timeout=self._timeout * WEBSOCKET_SHARE, tor_socks=self._tor_socks,
        )
        self._attempt = self.chosen.open()
        self._attempt.addTimeout(self._timeout * WEBSOCKET_SHARE, self._reactor)
        self._attempt.addCallbacks(self._opened, self._websocket_failed)
        return self._opening

    def send_text(self, text: str) -> None:
        if self.chosen is None:
            raise ClientError("NOT_CONNECTED", "the connection is not open")
        self.chosen.send_text(text)

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        if self._opening is not None and not self._opening.called:
            self._opening.cancel()
        elif self.chosen is not None:
            self.chosen.close(code, reason)

    def _opened(self, _: None) -> None:
        if self._opening is not None and not self._opening.called:
            self._opening.callback(None)

    def _websocket_failed(self, failure: Failure) -> None:
        if self._cancelled or self._opening is None or self._opening.called:
            return
        error = failure.value
        if isinstance(error, ClientError) and error.code != CONNECTION_FAILED:
            self._opening.errback(failure)  # TLS errors are not a blocked upgrade
            return
        why = error.message if isinstance(error, ClientError) else "no answer in time"
        log.info("WebSocket to {url} failed ({why}): trying the HTTP bridge", url=self.url, why=why)
        self.chosen = HttpTransport(
            as_http_url(self.url), self._receiver, reactor=self._reactor,
            ca_file=self._ca_file, timeout=self._timeout, tor_socks=self._tor_socks,
        )
        self._attempt = self.chosen.open()
        self._attempt.addCallbacks(self._opened, self._http_failed)

    def _http_failed(self, failure: Failure) -> None:
        if self._opening is not None and not self._opening.called:
            self._opening.errback(failure)

    def _cancel_open(self, opening: Deferred[None]) -> None:
        self._cancelled = True
        if self._attempt is not None and not self._attempt.called:
            self._attempt.cancel()
