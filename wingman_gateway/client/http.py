"""The HTTP bridge transport: POST to send; an event stream (or long poll) to receive.

For networks where WebSocket is blocked. Envelopes are posted one at a
time, in order, to ``/bridge/send``; the direct reply comes back as the
response. The register's reply carries the session secret, and from then on
a reader takes what the gateway queues for the node: ``/bridge/sse``,
falling back for good to ``/bridge/poll`` when a stream cannot be had (an
error status, or no first bytes in time: a buffering proxy). Every message
carries a sequence number; a reader that breaks resumes after the last one
received, so nothing is lost or repeated.
"""

from __future__ import annotations

import io
import json
import warnings
from collections import deque
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure
from twisted.web.client import (
    Agent,
    FileBodyProducer,
    HTTPConnectionPool,
    IResponse,
    readBody,
)
from twisted.web.http_headers import Headers
from zope.interface import implementer

from wingman_gateway.client.endpoints import AgentEndpoints
from wingman_gateway.client.errors import CONNECTION_FAILED, NOT_CONNECTED, TLS_ERROR, ClientError
from wingman_gateway.client.sse import Event, EventStreamProtocol
from wingman_gateway.client.tls import VerifyingPolicy, failure_text
from wingman_gateway.protocol.bridge import (
    CONFIRM_DELAY,
    POLL_TIMEOUT,
    READER_RETRIES,
    closed_reason,
    is_pong,
    probe_refusal,
)
from wingman_gateway.protocol.bridge import PING as _PING
from wingman_gateway.protocol.bridge import SESSION_ENDED as _SESSION_ENDED
from wingman_gateway.protocol.bridge import USER_AGENT as BRIDGE_USER_AGENT
from wingman_gateway.protocol.urls import bridge_base
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
    ) -> None:
        self.url = url
        self.streaming = stream  # False once fallen back to long polling
        self._receiver = receiver
        self._reactor = reactor
        self._timeout = timeout
        self._base = bridge_base(url).encode("utf-8")
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._pool.maxPersistentPerHost = 4
        endpoints = AgentEndpoints(reactor, VerifyingPolicy(ca_file), timeout)  # .onion: through Tor
        self._agent = Agent.usingEndpointFactory(reactor, endpoints, pool=self._pool)
        self._secret: bytes | None = None
        self._after = 0  # the last message received
        self._confirmed = 0  # the last message the gateway knows we have
        self._outbox: deque[bytes] = deque()
        self._posting = False
        self._opening: Deferred[None] | None = None
        self._probe: Deferred[Any] | None = None
        self._is_open = False
        self._finished = False
        self._ended = False  # the gateway ended the session (unregister acked)
        self._reading: Deferred[Any] | None = None
        self._stream: EventStreamProtocol | None = None
        self._failures = 0
        self._calls: list[IDelayedCall] = []
        self._silent: IDelayedCall | None = None
        self._confirm_call: IDelayedCall | None = None
        self._confirming = False
        self._inflight: set[Deferred[Any]] = set()

    # -- IClientTransport -------------------------------------------------

    def open(self) -> Deferred[None]:
        """Probe the bridge with a ``ping``: reachable, bridged, TLS verified."""
        if self._opening is not None:
            raise RuntimeError("a transport is opened once")
        self._opening = Deferred(self._cancel_open)
        try:
            self._probe = self._call(b"POST", b"/send", _PING, session=False)
        except ClientError as error:
            self._fail_open(error)
            return self._opening
        self._probe.addCallbacks(self._probed, self._probe_failed)
        return self._opening

    def send_text(self, text: str) -> None:
        if not self._is_open or self._finished:
            raise ClientError(NOT_CONNECTED, "the connection is not open")
        self._outbox.append(text.encode("utf-8"))
        self._pump()

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        if self._finished:
            return
        if self._opening is not None and not self._opening.called:
            self._opening.cancel()
            return
        alive = self._secret is not None and not self._ended
        self._lose(code, reason or "closed")
        if alive:
            # HTTP has no closing handshake: end the session so that the
            # node leaves its rooms now, not when the session times out.
            self._ended = True
            farewell = self._call(b"POST", b"/send", b'{"type":"unregister"}', track=False)
            farewell.addBoth(lambda _: self._pool.closeCachedConnections())

    # -- requests -----------------------------------------------------------

    def _call(
        self, method: bytes, path: bytes, body: bytes | None = None, *,
        query: bytes = b"", session: bool = True, timeout: float | None = None, track: bool = True,
    ) -> Deferred[tuple[IResponse, bytes]]:
        """One request to the bridge; its response and whole body, bounded in time."""
        headers = Headers({b"user-agent": [USER_AGENT]})
        if session and self._secret is not None:
            headers.setRawHeaders(b"x-wingman-session", [self._secret])
        producer = None
        if body is not None or method == b"POST":
            headers.setRawHeaders(b"content-type", [b"application/json"])
            producer = FileBodyProducer(io.BytesIO(body or b""))
        sent = self._agent.request(method, self._base + path + query, headers, producer)
        sent.addCallback(lambda response: read_body(response).addCallback(lambda data: (response, data)))
        sent.addTimeout(timeout if timeout is not None else self._timeout, self._reactor)
        if track:
            # Cancelled when the connection ends, so no request outlives it.
            self._inflight.add(sent)
            sent.addBoth(self._settled, sent)
        return sent

    def _settled(self, result: Any, request: Deferred[Any]) -> Any:
        self._inflight.discard(request)
        return result

    def _later(self, delay: float, function: Any, *args: Any) -> None:
        self._calls = [call for call in self._calls if call.active()]
        self._calls.append(self._reactor.callLater(delay, function, *args))

    # -- opening ------------------------------------------------------------

    def _probed(self, answer: tuple[IResponse, bytes]) -> None:
        response, data = answer
        if is_pong(response.code, data):
            self._is_open = True
            log.debug("bridge reachable at {url}", url=self.url)
            if self._opening is not None and not self._opening.called:
                self._opening.callback(None)
            return
        what = probe_refusal(response.code)
        self._fail_open(
            ClientError(CONNECTION_FAILED, f"{what} at {self.url} (HTTP {response.code})")
        )

    def _probe_failed(self, failure: Failure) -> None:
        if failure.check(CancelledError) and self._finished:
            return
        text, tls = failure_text(failure)
        if tls:
            self._fail_open(ClientError(TLS_ERROR, f"{self.url}: {text}"))
        else:
            self._fail_open(ClientError(CONNECTION_FAILED, f"cannot reach {self.url}: {text}"))

    def _fail_open(self, error: ClientError) -> None:
        self._finished = True
        self._pool.closeCachedConnections()
        if self._opening is not None and not self._opening.called:
            self._opening.errback(error)

    def _cancel_open(self, opening: Deferred[None]) -> None:
        self._finished = True
        if self._probe is not None and not self._probe.called:
            self._probe.cancel()
        self._pool.closeCachedConnections()

    # -- sending --------------------------------------------------------------

    def _pump(self) -> None:
        """Post the next envelope once the previous one is answered: order is kept."""
        if self._posting or not self._outbox or self._finished:
            return
        self._posting = True
        posted = self._call(b"POST", b"/send", self._outbox.popleft())
        posted.addCallbacks(self._posted, self._post_failed)

    def _posted(self, answer: tuple[IResponse, bytes]) -> None:
        self._posting = False
        if self._finished:
            return
        response, data = answer
        if response.code != 204:
            try:
                envelope = json.loads(data)
                assert isinstance(envelope, dict)
            except (ValueError, AssertionError):
                self._lose(None, f"{self.url} answered HTTP {response.code}, not a bridge reply")
                return
            self._reply(response.code, envelope, data.decode("utf-8"))
            if self._finished:
                return
        self._pump()

    def _reply(self, status: int, envelope: dict[str, Any], text: str) -> None:
        given = envelope.get("payload")
        payload: dict[str, Any] = given if isinstance(given, dict) else {}
        session = envelope.get("session")
        if envelope.get("type") == "ack" and isinstance(session, str) and self._secret is None:
            self._secret = session.encode("ascii", "replace")
            self._start_reader()
        elif envelope.get("type") == "ack" and payload.get("action") == "unregister":
            self._ended = True
        self._receiver.text_received(text)
        if status == 401 and self._secret is not None and payload.get("code") in _SESSION_ENDED:
            self._ended = True
            self._lose(None, f"the bridge session ended: {payload.get('message')}")

    def _post_failed(self, failure: Failure) -> None:
        self._posting = False
        if not self._finished:
            text, _ = failure_text(failure)
            self._lose(None, f"sending to {self.url} failed: {text}")

    # -- reading ----------------------------------------------------------------

    def _start_reader(self) -> None:
        if self._finished or self._reading is not None:
            return
        if self.streaming:
            self._open_stream()
        else:
            self._poll()

    def _open_stream(self) -> None:
        headers = Headers({b"user-agent": [USER_AGENT], b"accept": [b"text/event-stream"]})
        headers.setRawHeaders(b"x-wingman-session", [self._secret or b""])
        url = self._base + b"/sse?after=%d" % self._after
        opening = self._agent.request(b"GET", url, headers)
        opening.addTimeout(self._timeout, self._reactor)
        self._reading = opening
        opening.addCallbacks(self._stream_answered, self._stream_failed)

    def _stream_failed(self, failure: Failure) -> None:
        """No answer to the stream request in time: something holds it; poll instead."""
        if failure.check(defer.TimeoutError) and not self._finished:
            self._reading = None
            log.info("no answer to the event stream request at {url}: falling back to long polling",
                     url=self.url)
            self.streaming = False
            self._poll()
            return
        self._reader_failed(failure)

    def _stream_answered(self, response: IResponse) -> None:
        if self._finished:
            unread = EventStreamProtocol(lambda event: None, lambda: None)
            response.deliverBody(unread)
            unread.stop()
            return
        kind = (response.headers.getRawHeaders(b"content-type") or [b""])[0]
        if response.code != 200 or not kind.startswith(b"text/event-stream"):
            self._reading = read_body(response)
            self._reading.addBoth(lambda _: self._not_streamed(response.code))
            return
        stream = EventStreamProtocol(self._event, self._stream_flowing)
        self._stream = stream
        self._silent = self._reactor.callLater(self._timeout, self._stream_silent, stream)
        self._reading = stream.done
        response.deliverBody(stream)
        stream.done.addBoth(self._stream_ended, stream)

    def _not_streamed(self, status: int) -> None:
        self._reading = None
        if self._finished:
            return
        if status == 401:
            self._ended = True
            self._lose(None, "the bridge session ended (HTTP 401)")
            return
        log.info(
            "no event stream from {url} (HTTP {status}): falling back to long polling",
            url=self.url, status=status,
        )
        self.streaming = False
        self._poll()

    def _stream_flowing(self) -> None:
        self._failures = 0
        if self._silent is not None and self._silent.active():
            self._silent.cancel()
        self._silent = None

    def _stream_silent(self, stream: EventStreamProtocol) -> None:
        """No first bytes in time: something holds the stream back; poll instead."""
        if self._stream is not stream or self._finished:
            return
        log.info("the event stream from {url} is held back: falling back to long polling", url=self.url)
        self.streaming = False
        stream.stop()

    def _event(self, event: Event) -> None:
        if self._finished:
            return
        if event.event == "close":
            self._closed_by_gateway(event.data)
            return
        if event.id is not None and event.id.isdigit():
            seq = int(event.id)
            if seq <= self._after:
                return  # already had it (a resumed stream)
            self._after = seq
        self._receiver.text_received(event.data)
        self._confirm_soon()

    def _stream_ended(self, reason: Any, stream: EventStreamProtocol) -> None:
        if self._stream is stream:
            self._stream = None
            self._reading = None
        if self._finished:
            return
        if not self.streaming:
            self._poll()
            return
        why = reason.getErrorMessage() if isinstance(reason, Failure) else "stream ended"
        self._reader_retry(f"event stream from {self.url} ended: {why}")

    def _poll(self) -> None:
        query = b"?after=%d&timeout=%d" % (self._after, POLL_TIMEOUT)
        polling = self._call(b"GET", b"/poll", query=query, timeout=POLL_TIMEOUT + self._timeout)
        self._reading = polling
        polling.addCallbacks(self._polled, self._reader_failed)

    def _polled(self, answer: tuple[IResponse, bytes]) -> None:
        self._reading = None
        if self._finished:
            return
        response, data = answer
        if response.code == 401:
            self._ended = True
            self._lose(None, "the bridge session ended (HTTP 401)")
            return
        try:
            body: dict[str, Any] = json.loads(data) if response.code == 200 else {}
            messages = body["messages"]
        except (ValueError, TypeError, KeyError):
            self._reader_retry(f"{self.url} answered a poll with HTTP {response.code}")
            return
        self._failures = 0
        for item in messages:
            seq = item.get("seq") if isinstance(item, dict) else None
            if not isinstance(seq, int) or seq <= self._after:
                continue
            self._after = seq
            self._receiver.text_received(json.dumps(item.get("envelope")))
            if self._finished:
                return
        if isinstance(body.get("closed"), dict):
            self._closed_by_gateway(json.dumps(body["closed"]))
            return
        self._poll()

    def _reader_failed(self, failure: Failure) -> None:
        self._reading = None
        if self._finished:
            return
        text, _ = failure_text(failure)
        self._reader_retry(f"reading from {self.url} failed: {text}")

    def _reader_retry(self, why: str) -> None:
        """Re-open the reader after a short delay; after a few failures in a row, give up."""
        if self._failures >= len(READER_RETRIES):
            self._lose(None, why)
            return
        delay = READER_RETRIES[self._failures]
        self._failures += 1
        log.debug("{why}; reading again in {delay} s", why=why, delay=delay)
        self._later(delay, self._start_reader)

    def _closed_by_gateway(self, data: str) -> None:
        code, reason = closed_reason(data)
        self._ended = True
        self._lose(code, reason)

    # -- confirming streamed messages -----------------------------------------

    def _confirm_soon(self) -> None:
        if self._confirm_call is None and not self._confirming:
            self._confirm_call = self._reactor.callLater(CONFIRM_DELAY, self._confirm)

    def _confirm(self) -> None:
        self._confirm_call = None
        if self._finished or self._after <= self._confirmed:
            return
        after = self._after
        self._confirming = True
        confirming = self._call(b"POST", b"/ack", query=b"?after=%d" % after)
        confirming.addBoth(self._confirm_answered, after)

    def _confirm_answered(self, answer: Any, after: int) -> None:
        self._confirming = False
        if isinstance(answer, Failure) or answer[0].code != 204:
            return  # the next message confirms again; a lost session shows on the reader
        self._confirmed = max(self._confirmed, after)
        if self._after > self._confirmed:
            self._confirm_soon()

    # -- the end ----------------------------------------------------------------

    def _lose(self, code: int | None, reason: str) -> None:
        if self._finished:
            return
        self._finished = True
        self._outbox.clear()
        for call in self._calls + [self._confirm_call, self._silent]:
            if call is not None and call.active():
                call.cancel()
        if self._stream is not None:
            self._stream.stop()
        for request in [self._reading, *self._inflight]:
            if request is not None and not request.called:
                request.cancel()
        self._pool.closeCachedConnections()
        if self._is_open:
            self._is_open = False
            log.debug("bridge connection to {url} over: {reason}", url=self.url, reason=reason)
            self._receiver.connection_lost(code, reason)

