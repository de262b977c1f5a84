"""The HTTP bridge transport on Twisted's Agent: POST to send; an event
stream (or long poll) to receive.

For networks where WebSocket is blocked. What to request, and what the
answers mean, is ``BridgeCore``'s; this module only makes the requests
and keeps the timers it asks for.
"""

from __future__ import annotations

import io
import warnings
from typing import Any, Iterator

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web.client import (
    Agent,
    FileBodyProducer,
    HTTPConnectionPool,
    readBody,
)
from twisted.web.iweb import IResponse
from twisted.web.http_headers import Headers
from zope.interface import implementer

from wingman_gateway.client.endpoints import AgentEndpoints
from wingman_gateway.client.errors import ClientError
from wingman_gateway.client.sse import StoppableBody
from wingman_gateway.client.tls import VerifyingPolicy, failure_text
from wingman_gateway.protocol.bridge import USER_AGENT as BRIDGE_USER_AGENT
from wingman_gateway.protocol.bridge_actions import FAREWELL, PROBE, STREAM, Action, Lost, Request, perform
from wingman_gateway.protocol.bridge_core import BridgeCore
from wingman_gateway.client.transport import CLOSE_NORMAL, IClientTransport, ITransportReceiver
from wingman_gateway.logs import get_logger

log = get_logger("wingman_gateway.client.http")

USER_AGENT = BRIDGE_USER_AGENT.encode("ascii")


def read_body(response: IResponse) -> Deferred[bytes]:
    """``readBody``, without its warning about a body that arrived before it was asked for."""
    with warnings.catch_warnings():
        # A short body is often in whole before it is asked for; the
        # connection is then back in the pool and there is nothing to abort.
        warnings.filterwarnings("ignore", "Using readBody with a transport", DeprecationWarning)
        return readBody(response)


class _Body(StoppableBody):
    """A stream's body, passed to the core as it arrives."""

    def __init__(self, transport: "HttpTransport", request: Request | None) -> None:
        self.owner = transport
        self.request = request

    def dataReceived(self, data: bytes) -> None:
        if not self.stopped and self.request is not None:
            self.owner._run(self.owner._core.received(self.request, data))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.request is not None and self.owner._bodies.pop(self.request, None) is self:
            why = reason.getErrorMessage() if isinstance(reason, Failure) else "stream ended"
            self.owner._run(self.owner._core.ended(self.request, why))


@implementer(IClientTransport)
class HttpTransport:
    """One bridge session with a gateway at ``url`` (``http://`` or ``https://``)."""

    def __init__(
        self,
        url: str,
        receiver: ITransportReceiver,
        *,
        reactor: Any,
        ca_file: str | None = None,
        timeout: float = 10.0,
        stream: bool = True,
        tor_socks: str | None = None,
    ) -> None:
        self.url = url
        self._core = BridgeCore(url, log=log, timeout=timeout, stream=stream)
        self._receiver = receiver
        self._reactor = reactor
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._pool.maxPersistentPerHost = 4
        endpoints = AgentEndpoints(reactor, VerifyingPolicy(ca_file), timeout, tor_socks)  # .onion: through Tor
        self._agent = Agent.usingEndpointFactory(reactor, endpoints, pool=self._pool)
        self._opening: Deferred[None] | None = None
        self._requests: dict[Request, Deferred[Any]] = {}  # cancelled when the session ends
        self._responses: dict[Request, IResponse] = {}  # streams answered, their bodies unread
        self._bodies: dict[Request, _Body] = {}
        self._timers: dict[str, IDelayedCall] = {}

    @property
    def streaming(self) -> bool:
        """False once fallen back to long polling."""
        return self._core.streaming

    # -- IClientTransport -------------------------------------------------

    def open(self) -> Deferred[None]:
        """Probe the bridge with a ``ping``: reachable, bridged, TLS verified."""
        if self._opening is not None:
            raise RuntimeError("a transport is opened once")
        self._opening = Deferred(self._cancel_open)
        self._run(self._core.open())
        return self._opening

    def send_text(self, text: str) -> None:
        self._run(self._core.send(text))

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        if self._core.finished:
            return
        if self._opening is not None and not self._opening.called:
            self._opening.cancel()
            return
        self._run(self._core.close(code, reason))

    # -- the core's driver ---------------------------------------------

    def _run(self, actions: Iterator[Action]) -> None:
        perform(actions, self)

    def request(self, request: Request) -> None:
        self._send(request)

    def _send(self, request: Request) -> Deferred[Any] | None:
        headers = Headers({name.encode("ascii"): [value.encode("ascii", "replace")]
                           for name, value in request.headers.items()})
        producer = None if request.body is None else FileBodyProducer(io.BytesIO(request.body))
        try:
            sent: Deferred[Any] = self._agent.request(request.method.encode("ascii"), request.url.encode("utf-8"), headers, producer)
        except ClientError as error:
            if request.kind != PROBE:
                raise
            self._core.abandon()
            self.open_failed(error)
            return None
        if request.kind != STREAM:
            sent.addCallback(lambda response: read_body(response).addCallback(lambda data: (response, data)))
        sent.addTimeout(request.timeout, self._reactor)
        if request.kind != FAREWELL:
            # Cancelled when the connection ends, so no request outlives it.
            self._requests[request] = sent
        sent.addCallbacks(self._answered, self._failed, (request,), errbackArgs=(request,))
        return sent

    def _answered(self, answer: Any, request: Request) -> None:
        self._requests.pop(request, None)
        if request.kind != STREAM:
            response, data = answer
            self._run(self._core.answered(request, response.code, data))
            return
        kind = (answer.headers.getRawHeaders(b"content-type") or [b""])[0]
        self._responses[request] = answer
        self._run(self._core.answered(request, answer.code, b"", kind.decode("latin-1")))
        self._discard(request)

    def _failed(self, failure: Failure, request: Request) -> None:
        self._requests.pop(request, None)
        text, tls = failure_text(failure)
        self._run(self._core.failed(request, text, tls=tls, timed_out=bool(failure.check(defer.TimeoutError))))

    def _discard(self, request: Request) -> None:
        """A stream's body nobody reads: let it go."""
        response = self._responses.pop(request, None)
        if response is None:
            return
        if not self._core.finished:
            read_body(response).addErrback(lambda _: None)
            return
        unread = _Body(self, None)
        response.deliverBody(unread)
        unread.stop()

    def deliver(self, text: str) -> None:
        self._receiver.text_received(text)

    def later(self, timer: str, delay: float) -> None:
        self.cancel(timer)
        self._timers[timer] = self._reactor.callLater(delay, self._fire, timer)

    def _fire(self, timer: str) -> None:
        self._timers.pop(timer, None)
        self._run(self._core.fire(timer))

    def cancel(self, timer: str) -> None:
        call = self._timers.pop(timer, None)
        if call is not None and call.active():
            call.cancel()

    def read(self, request: Request) -> None:
        response = self._responses.pop(request)
        body = _Body(self, request)
        self._bodies[request] = body
        response.deliverBody(body)

    def stop(self, request: Request) -> None:
        body = self._bodies.pop(request, None)
        if body is not None:
            body.stop()
        sent = self._requests.pop(request, None)
        if sent is not None and not sent.called:
            sent.cancel()

    def opened(self) -> None:
        if self._opening is not None and not self._opening.called:
            self._opening.callback(None)

    def open_failed(self, error: ClientError) -> None:
        self._pool.closeCachedConnections()
        if self._opening is not None and not self._opening.called:
            self._opening.errback(error)

    def _cancel_open(self, opening: Deferred[None]) -> None:
        self._core.abandon()
        self._stop_all()
        self._pool.closeCachedConnections()

    def lost(self, lost: Lost) -> None:
        self._stop_all()
        self._pool.closeCachedConnections()
        if lost.notify:
            self._receiver.connection_lost(lost.code, lost.reason)
        if lost.farewell is not None:
            farewell = self._send(lost.farewell)
            if farewell is not None:
                farewell.addBoth(lambda _: self._pool.closeCachedConnections())

    def _stop_all(self) -> None:
        for timer in list(self._timers):
            self.cancel(timer)
        for request in [*self._bodies, *self._requests]:
            self.stop(request)
