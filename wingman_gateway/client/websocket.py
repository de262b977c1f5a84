"""The WebSocket transport: Autobahn's Twisted client behind ``IClientTransport``."""

from __future__ import annotations

from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.websocket.util import parse_url
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import wrapClientTLS
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from wingman_gateway.client.endpoints import endpoint_for
from wingman_gateway.client.errors import CONNECTION_FAILED, TLS_ERROR, ClientError
from wingman_gateway.client.tls import client_options, tls_failure
from wingman_gateway.client.transport import CLOSE_NORMAL, IClientTransport, ITransportReceiver
from wingman_gateway.logs import get_logger

log = get_logger("wingman_gateway.client.websocket")

# WebSocket-level pings find a gateway that vanished without closing TCP
# (the gateway's own JSON heartbeat is answered by the client, not here).
# Autobahn's timers have a one-second grain, so these stay coarse.
_AUTO_PING_INTERVAL = 20.0
_AUTO_PING_TIMEOUT = 20.0
_HANDSHAKE_SLACK = 2.0


class _ClientProtocol(WebSocketClientProtocol):
    """Hands frames and the end of the connection to its ``WebSocketTransport``."""

    factory: "_ClientFactory"

    def onOpen(self) -> None:
        self.factory.owner._opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.owner._received(payload)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        # Autobahn's onClose gives only text; keep the failure to name TLS errors.
        self.factory.owner._lost_reason = reason
        super().connectionLost(reason)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.owner._closed(code, reason or "")


class _ClientFactory(WebSocketClientFactory):
    protocol = _ClientProtocol  # type: ignore[assignment]  # Autobahn's factories build from the class
    noisy = False  # one factory per connection: no start/stop lines in the log
    owner: "WebSocketTransport"


@implementer(IClientTransport)
class WebSocketTransport:
    """One WebSocket connection to ``url`` (``ws://`` or ``wss://``)."""

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
        self._tor_socks = tor_socks  # the SOCKS endpoint for a .onion host
        self._timeout = timeout
        self._opening: Deferred[None] | None = None
        self._connecting: Deferred[Any] | None = None
        self._protocol: _ClientProtocol | None = None
        self._lost_reason: Failure | None = None
        self._is_open = False
        self._finished = False

    # -- IClientTransport -------------------------------------------------

    def open(self) -> Deferred[None]:
        if self._opening is not None:
            raise RuntimeError("a transport is opened once")
        self._opening = Deferred(self._cancel_open)
        try:
            secure, host, port, _, _, _ = parse_url(self.url)
            endpoint: Any = endpoint_for(self._reactor, host, port, self._timeout, self._tor_socks)
            if secure:
                endpoint = wrapClientTLS(client_options(host, self._ca_file), endpoint)
            factory = _ClientFactory(self.url, reactor=self._reactor)
        except ClientError as error:
            self._fail_open(error)
            return self._opening
        except Exception as error:
            self._fail_open(ClientError(CONNECTION_FAILED, f"bad gateway URL {self.url!r}: {error}"))
            return self._opening
        factory.owner = self
        factory.setProtocolOptions(
            # A backstop only: the client bounds the whole open itself, and
            # Autobahn's coarse timers could fire a short timeout early.
            openHandshakeTimeout=self._timeout + _HANDSHAKE_SLACK,
            autoPingInterval=_AUTO_PING_INTERVAL,
            autoPingTimeout=_AUTO_PING_TIMEOUT,
        )
        self._connecting = endpoint.connect(factory)
        self._connecting.addCallbacks(self._tcp_connected, self._connect_failed)
        return self._opening

    def send_text(self, text: str) -> None:
        if self._protocol is None or not self._is_open:
            raise ClientError("NOT_CONNECTED", "the connection is not open")
        self._protocol.sendMessage(text.encode("utf-8"), isBinary=False)

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        if self._finished:
            return
        if self._opening is not None and not self._opening.called:
            self._opening.cancel()
        elif self._protocol is not None:
            self._protocol.sendClose(code, reason or None)

    # -- from the protocol --------------------------------------------------

    def _opened(self, protocol: _ClientProtocol) -> None:
        self._protocol = protocol
        if self._opening is None or self._opening.called:
            protocol.dropConnection(abort=True)
            return
        self._is_open = True
        log.debug("connected to {url}", url=self.url)
        self._opening.callback(None)

    def _received(self, payload: bytes) -> None:
        if not self._is_open:
            return
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            log.warn("dropped a frame that is not UTF-8 from {url}", url=self.url)
            return
        self._receiver.text_received(text)

    def _closed(self, code: int | None, reason: str) -> None:
        if self._finished:
            return
        self._finished = True
        if self._is_open:
            self._is_open = False
            self._receiver.connection_lost(code, reason)
            return
        tls = tls_failure(self._lost_reason)
        if tls is not None:
            self._fail_open(ClientError(TLS_ERROR, f"{self.url}: {tls}"))
        else:
            self._fail_open(
                ClientError(CONNECTION_FAILED, f"no WebSocket connection to {self.url}: {reason}")
            )

    # -- opening ------------------------------------------------------------

    def _tcp_connected(self, protocol: _ClientProtocol) -> None:
        self._protocol = protocol

    def _connect_failed(self, failure: Failure) -> None:
        self._finished = True
        if failure.check(CancelledError):
            return
        self._fail_open(
            ClientError(CONNECTION_FAILED, f"cannot connect to {self.url}: {failure.getErrorMessage()}")
        )

    def _fail_open(self, error: ClientError) -> None:
        if self._opening is not None and not self._opening.called:
            self._opening.errback(error)

    def _cancel_open(self, opening: Deferred[None]) -> None:
        """The caller gave up: stop connecting, or drop a half-open connection."""
        if self._connecting is not None and not self._connecting.called:
            self._connecting.cancel()
        elif self._protocol is not None:
            self._protocol.dropConnection(abort=True)
