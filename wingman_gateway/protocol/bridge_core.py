"""``BridgeCore``: a node's side of the HTTP bridge session, without any I/O.

A driver (Twisted's Agent, httpx) tells the core what happened: a
response arrived (``answered``), a request failed (``failed``), stream bytes
came (``received``), a stream ended (``ended``), a timer fired (``fire``).
Each call answers with what to do next, as actions, in order: a ``Request``
to make, a text to ``Deliver`` to the node, a timer to start (``Later``) or
stop (``Cancel``), a stream body to ``Read`` or a request to ``Stop``, and
at the end ``Opened``, ``OpenFailed`` or ``Lost``. The actions come lazily:
a driver performs each before taking the next, so a node that closes the
connection while a text is delivered stops the rest, as a callback would.

Envelopes are posted one at a time, in order; the register's reply carries
the session secret, and from then on a reader takes what the gateway queues
for the node: ``/bridge/sse``, falling back for good to ``/bridge/poll``
when a stream cannot be had (an error status, no answer or no first bytes
in time: a buffering proxy). Every message carries a sequence number; a
reader that breaks resumes after the last one received, so nothing is lost
or repeated, and streamed messages are confirmed in batches.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any, Iterator

from wingman_gateway.protocol.bridge import (
    CONFIRM_DELAY,
    PING,
    POLL_TIMEOUT,
    READER_RETRIES,
    SESSION_ENDED,
    UNREGISTER,
    USER_AGENT,
    Cursor,
    closed_reason,
    is_pong,
    probe_refusal,
    session_secret,
)
from wingman_gateway.protocol.bridge_actions import (
    CONFIRM, CONFIRMING, POLL, PROBE, READ, SEND, SILENT, STREAM, FAREWELL,
    Action, Cancel, Deliver, Later, Lost, Opened, OpenFailed, Read, Request, Stop,
)
from wingman_gateway.protocol.errors import CONNECTION_FAILED, NOT_CONNECTED, TLS_ERROR, ClientError
from wingman_gateway.protocol.runtime import Log
from wingman_gateway.protocol.sse import Event, EventParser, StreamTooLong
from wingman_gateway.protocol.urls import bridge_base


class BridgeCore:
    """One bridge session with a gateway at ``url`` (``http://`` or ``https://``)."""

    def __init__(self, url: str, *, log: Log, timeout: float = 10.0, stream: bool = True) -> None:
        self.url = url
        self.streaming = stream  # False once fallen back to long polling
        self.log = log
        self.timeout = timeout
        self.secret: str | None = None
        self.cursor = Cursor()
        self.is_open = False
        self.finished = False
        self.session_ended = False  # the gateway ended the session (unregister acked)
        self._base = bridge_base(url)
        self._outbox: deque[bytes] = deque()
        self._posting = False
        self._reading: Request | None = None  # the reader's request: a stream or a poll
        self._parser = EventParser()
        self._flowing = False  # the current stream has sent bytes
        self._failures = 0  # reader failures in a row
        self._confirm_due = False
        self._confirming = False

    # -- what the driver is asked to do -----------------------------------

    def open(self) -> Iterator[Action]:
        """Probe the bridge with a ``ping``: reachable, bridged, TLS verified."""
        yield self._request(PROBE, "POST", "/send", PING, session=False)

    def send(self, text: str) -> Iterator[Action]:
        """Queue one envelope; raises ``NOT_CONNECTED`` unless open."""
        if not self.is_open or self.finished:
            raise ClientError(NOT_CONNECTED, "the connection is not open")
        self._outbox.append(text.encode("utf-8"))
        return self._pump()

    def close(self, code: int, reason: str) -> Iterator[Action]:
        if self.finished:
            return
        # HTTP has no closing handshake: end the session so that the node
        # leaves its rooms now, not when the session times out.
        alive = self.secret is not None and not self.session_ended
        self.session_ended = self.session_ended or alive
        yield from self._lose(code, reason or "closed", farewell=alive)

    def abandon(self) -> None:
        """Opening was given up: whatever is still reported is ignored."""
        self.finished = True

    def wants(self, request: Request) -> bool:
        """Whether ``request`` is still the current reader of a live session."""
        return request is self._reading and not self.finished

    # -- what the driver reports ------------------------------------------

    def answered(self, request: Request, status: int, body: bytes, content_type: str = "") -> Iterator[Action]:
        """``request`` was answered (a stream: its status and content type, the body to come)."""
        if request.kind == PROBE:
            return self._probed(status, body)
        if request.kind == SEND:
            return self._posted(status, body)
        if request.kind == STREAM:
            return self._stream_answered(request, status, content_type)
        if request.kind == POLL:
            return self._polled(request, status, body)
        if request.kind == CONFIRM:
            return self._confirmed(request, status == 204)
        return iter(())

    def failed(self, request: Request, text: str, *, tls: bool = False, timed_out: bool = False) -> Iterator[Action]:
        """``request`` failed (``text`` says why; ``tls``: a certificate or handshake error)."""
        if request.kind == PROBE:
            return self._probe_failed(text, tls)
        if request.kind == SEND:
            return self._post_failed(text)
        if request.kind == STREAM and timed_out:
            return self._stream_unanswered(request)
        if request.kind in (STREAM, POLL):
            return self._reader_gone(request, f"reading from {self.url} failed: {text}")
        if request.kind == CONFIRM:
            return self._confirmed(request, False)
        return iter(())

    def received(self, request: Request, data: bytes) -> Iterator[Action]:
        """Bytes of a stream's body."""
        if not self.wants(request):
            return
        if not self._flowing:
            self._flowing = True
            self._failures = 0
            yield Cancel(SILENT)
        try:
            for event in self._parser.feed(data):
                yield from self._event(event)
                if not self.wants(request):
                    return
        except StreamTooLong as error:
            self._reading = None
            yield Stop(request)
            yield from self._reader_retry(f"reading from {self.url} failed: {error}")

    def ended(self, request: Request, why: str) -> Iterator[Action]:
        """A stream's body ended (``why``)."""
        return self._reader_gone(request, f"event stream from {self.url} ended: {why}")

    def fire(self, timer: str) -> Iterator[Action]:
        """Timer ``timer`` is due."""
        if timer == READ:
            return self._start_reader()
        if timer == SILENT:
            return self._stream_silent()
        if timer == CONFIRMING:
            return self._confirm()
        return iter(())

    # -- requests -----------------------------------------------------------

    def _request(
        self, kind: str, method: str, path: str, body: bytes | None = None, *,
        session: bool = True, timeout: float | None = None, after: int = 0,
    ) -> Request:
        headers = {"user-agent": USER_AGENT}
        if session and self.secret is not None:
            headers["x-wingman-session"] = self.secret
        if method == "POST":
            headers["content-type"] = "application/json"
            body = body or b""
        if kind == STREAM:
            headers["accept"] = "text/event-stream"
        return Request(kind, method, self._base + path, headers, body,
                       self.timeout if timeout is None else timeout, after)

    # -- opening ------------------------------------------------------------

    def _probed(self, status: int, body: bytes) -> Iterator[Action]:
        if self.finished:
            return
        if is_pong(status, body):
            self.is_open = True
            self.log.debug("bridge reachable at {url}", url=self.url)
            yield Opened()
            return
        self.finished = True
        yield OpenFailed(ClientError(CONNECTION_FAILED, f"{probe_refusal(status)} at {self.url} (HTTP {status})"))

    def _probe_failed(self, text: str, tls: bool) -> Iterator[Action]:
        if self.finished:
            return
        self.finished = True
        if tls:
            yield OpenFailed(ClientError(TLS_ERROR, f"{self.url}: {text}"))
        else:
            yield OpenFailed(ClientError(CONNECTION_FAILED, f"cannot reach {self.url}: {text}"))

    # -- sending --------------------------------------------------------------

    def _pump(self) -> Iterator[Action]:
        """Post the next envelope once the previous one is answered: order is kept."""
        if self._posting or not self._outbox or self.finished:
            return
        self._posting = True
        yield self._request(SEND, "POST", "/send", self._outbox.popleft())

    def _posted(self, status: int, data: bytes) -> Iterator[Action]:
        self._posting = False
        if self.finished:
            return
        if status != 204:
            try:
                envelope = json.loads(data)
                assert isinstance(envelope, dict)
            except (ValueError, AssertionError):
                yield from self._lose(None, f"{self.url} answered HTTP {status}, not a bridge reply")
                return
            yield from self._reply(status, envelope, data.decode("utf-8"))
            if self.finished:
                return
        yield from self._pump()

    def _reply(self, status: int, envelope: dict[str, Any], text: str) -> Iterator[Action]:
        given = envelope.get("payload")
        payload: dict[str, Any] = given if isinstance(given, dict) else {}
        secret = session_secret(envelope)
        if secret is not None and self.secret is None:
            self.secret = secret
            yield from self._start_reader()
        elif envelope.get("type") == "ack" and payload.get("action") == "unregister":
            self.session_ended = True
        yield Deliver(text)
        if status == 401 and self.secret is not None and payload.get("code") in SESSION_ENDED:
            self.session_ended = True
            yield from self._lose(None, f"the bridge session ended: {payload.get('message')}")

    def _post_failed(self, text: str) -> Iterator[Action]:
        self._posting = False
        if not self.finished:
            yield from self._lose(None, f"sending to {self.url} failed: {text}")

    # -- reading ----------------------------------------------------------------

    def _start_reader(self) -> Iterator[Action]:
        if self.finished or self._reading is not None:
            return
        if self.streaming:
            self._parser = EventParser()
            self._flowing = False
            self._reading = self._request(STREAM, "GET", f"/sse?after={self.cursor.after}")
        else:
            self._reading = self._request(
                POLL, "GET", f"/poll?after={self.cursor.after}&timeout={POLL_TIMEOUT}",
                timeout=POLL_TIMEOUT + self.timeout,
            )
        yield self._reading

    def _fall_back(self, why: str, **fields: Any) -> Iterator[Action]:
        """Poll from now on: a stream cannot be had."""
        self.log.info(why + ": falling back to long polling", url=self.url, **fields)
        self.streaming = False
        self._reading = None
        yield from self._start_reader()

    def _stream_unanswered(self, request: Request) -> Iterator[Action]:
        """No answer to the stream request in time: something holds it; poll instead."""
        if self.wants(request):
            yield from self._fall_back("no answer to the event stream request at {url}")

    def _stream_answered(self, request: Request, status: int, content_type: str) -> Iterator[Action]:
        if not self.wants(request):
            return  # its body is not read
        if status != 200 or not content_type.startswith("text/event-stream"):
            self._reading = None
            if status == 401:
                yield from self._unauthorised()
                return
            yield from self._fall_back("no event stream from {url} (HTTP {status})", status=status)
            return
        yield Later(SILENT, self.timeout)
        yield Read(request)

    def _stream_silent(self) -> Iterator[Action]:
        """No first bytes in time: something holds the stream back; poll instead."""
        request = self._reading
        if request is None or request.kind != STREAM or self._flowing or self.finished:
            return
        yield Stop(request)
        yield from self._fall_back("the event stream from {url} is held back")

    def _event(self, event: Event) -> Iterator[Action]:
        if event.event == "close":
            yield from self._closed_by_gateway(event.data)
            return
        if self.cursor.take(event.id):
            yield Deliver(event.data)
            if not self.finished:
                yield from self._confirm_soon()

    def _polled(self, request: Request, status: int, data: bytes) -> Iterator[Action]:
        if not self.wants(request):
            return
        self._reading = None
        if status == 401:
            yield from self._unauthorised()
            return
        try:
            body: dict[str, Any] = json.loads(data) if status == 200 else {}
            messages = body["messages"]
            if not isinstance(messages, list):
                raise TypeError("messages is not a list")
        except (ValueError, TypeError, KeyError):
            yield from self._reader_retry(f"{self.url} answered a poll with HTTP {status}")
            return
        self._failures = 0
        for item in messages:
            if isinstance(item, dict) and self.cursor.take(item.get("seq")):
                yield Deliver(json.dumps(item.get("envelope")))
                if self.finished:
                    return
        self.cursor.confirmed = self.cursor.after  # a poll's ``after`` confirms
        if isinstance(body.get("closed"), dict):
            yield from self._closed_by_gateway(json.dumps(body["closed"]))
            return
        yield from self._start_reader()

    def _reader_gone(self, request: Request, why: str) -> Iterator[Action]:
        """The current reader broke: read again, or give up."""
        if not self.wants(request):
            return
        self._reading = None
        yield from self._reader_retry(why)

    def _reader_retry(self, why: str) -> Iterator[Action]:
        """Re-open the reader after a short delay; after a few failures in a row, give up."""
        if self._failures >= len(READER_RETRIES):
            yield from self._lose(None, why)
            return
        delay = READER_RETRIES[self._failures]
        self._failures += 1
        self.log.debug("{why}; reading again in {delay} s", why=why, delay=delay)
        yield Later(READ, delay)

    def _unauthorised(self) -> Iterator[Action]:
        self.session_ended = True
        yield from self._lose(None, "the bridge session ended (HTTP 401)")

    def _closed_by_gateway(self, data: str) -> Iterator[Action]:
        code, reason = closed_reason(data)
        self.session_ended = True
        yield from self._lose(code, reason)

    # -- confirming streamed messages -----------------------------------------

    def _confirm_soon(self) -> Iterator[Action]:
        if not self._confirm_due and not self._confirming:
            self._confirm_due = True
            yield Later(CONFIRMING, CONFIRM_DELAY)

    def _confirm(self) -> Iterator[Action]:
        self._confirm_due = False
        if self.finished or self.cursor.after <= self.cursor.confirmed:
            return
        self._confirming = True
        after = self.cursor.after
        yield self._request(CONFIRM, "POST", f"/ack?after={after}", after=after)

    def _confirmed(self, request: Request, ok: bool) -> Iterator[Action]:
        self._confirming = False
        if not ok:
            return  # the next message confirms again; a lost session shows on the reader
        self.cursor.confirmed = max(self.cursor.confirmed, request.after)
        if self.cursor.after > self.cursor.confirmed and not self.finished:
            yield from self._confirm_soon()

    # -- the end ----------------------------------------------------------------

    def _lose(self, code: int | None, reason: str, farewell: bool = False) -> Iterator[Action]:
        if self.finished:
            return
        self.finished = True
        self._outbox.clear()
        self._reading = None
        notify, self.is_open = self.is_open, False
        if notify:
            self.log.debug("bridge connection to {url} over: {reason}", url=self.url, reason=reason)
        goodbye = self._request(FAREWELL, "POST", "/send", UNREGISTER) if farewell else None
        yield Lost(code, reason, notify, goodbye)
