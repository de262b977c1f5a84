"""Request bodies over ``--max-payload`` are refused before they are read.

twisted.web buffers a request's whole body before it renders anything, so
the check sits in the two hooks the HTTP channel calls earlier:
``gotLength`` (the headers are in; ``Content-Length`` is known) and
``handleContentChunk`` (for chunked bodies, as they arrive). An oversized
request is answered 413 at once; the rest of its body is read and thrown
away while the answer goes out (closing with unread data would make the
kernel reset the connection and destroy the answer), for at most
``LINGER`` seconds, then the connection is closed.
"""

from __future__ import annotations

import io
from typing import Any

from twisted.python.failure import Failure
from twisted.web.server import Request

from wingman_gateway.envelope import encode
from wingman_gateway.web.headers import BadHeader
from wingman_gateway.web.parts import site_of, transport_of

# How long the rest of a refused body is read and discarded.
LINGER = 2.0


class BoundedRequest(Request):
    """A Request of a ``GatewaySite``: bodies are bounded by the Router's payload limit.

    The site provides ``router`` (its limit and error), ``cors`` (a
    ``CorsPolicy`` or None, so a page can read the refusal) and ``clock``.
    """

    _refused = False

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > self._limit():
            self._refuse(length)
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            return
        size = (self.content.tell() if self.content is not None else 0) + len(data)
        if size > self._limit():
            self._refuse(size)
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self._refused:
            return  # answered already; the connection is closing
        super().requestReceived(command, path, version)

    def _limit(self) -> int:
        return int(site_of(self).router.limits.max_payload)

    def _refuse(self, size: int) -> None:
        """Answer 413 now, discard the rest of the body, close."""
        self._refused = True
        self.content = io.BytesIO()
        site = site_of(self)
        # No "100 Continue" after this answer, and nothing kept of the body.
        self.requestHeaders.removeHeader(b"expect")
        # The request line is not handed to the Request before the body is
        # in; the channel only speaks HTTP/1.x, and 1.1 is valid for both.
        self.clientproto = b"HTTP/1.1"
        router = site.router
        error = router.too_large(size)
        body = encode({"type": "error", "payload": error.payload(), "timestamp": router.now_ms()})
        if site.cors is not None:
            try:
                site.cors.admit(self)
            except BadHeader:
                pass  # an unreadable Origin gets no CORS headers; the 413 still goes out
        self.setResponseCode(413)
        self.setHeader(b"content-type", b"application/json")
        self.setHeader(b"content-length", b"%d" % len(body))
        self.setHeader(b"connection", b"close")
        self.write(body)
        transport = transport_of(self)
        half_close = getattr(transport, "loseWriteConnection", None)
        if half_close is not None:
            half_close()
        else:
            transport.loseConnection()
        cutoff = site.clock.callLater(LINGER, transport.abortConnection)
        self.notifyFinish().addBoth(_cancel, cutoff)


def _cancel(result: Any, call: Any) -> None:
    if call.active():
        call.cancel()
    return None  # a Failure (the request ended early) is consumed, not passed on
