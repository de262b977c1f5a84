"""The request of a listener's Site: bounded bodies, readable headers, the reserve.

- A header the gateway cannot read (``web.headers.BadHeader``) is answered
  ``400 INVALID_REQUEST`` with the reason, never a 500 and a traceback.
- A connection accepted into the reserve (``gate``) is served only
  ``/health`` and requests of existing bridge sessions; anything else is
  ``503`` with ``Retry-After``.
"""

from __future__ import annotations

from typing import Any

from twisted.python.failure import Failure

from wingman_gateway import errors
from wingman_gateway.envelope import encode
from wingman_gateway.gate import gate_of
from wingman_gateway.web.bounded import BoundedRequest
from wingman_gateway.web.headers import BadHeader, header

# What a reserved connection may still ask for.
RESERVE_PATHS = (b"/health",)
SESSION_HEADERS = (b"x-wingman-session", b"authorization")
RESERVE_REASON = (
    "the gateway is at its connection limit: only /health and existing bridge sessions are served"
)


class GatewayRequest(BoundedRequest):
    """A request of a ``GatewaySite``."""

    channel: Any  # a GatewayChannel, whose ``site`` is a GatewaySite

    _bad: BadHeader | None = None

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        # twisted.web parses a POST's Content-Type itself and raises on a bad
        # one, past any handler: check it first, answer 400 in process().
        # Every value counts (twisted.web reads the first, ``header`` the last),
        # and only ASCII: twisted.web's parse splits on bytes such as 0x85.
        for raw in self.requestHeaders.getRawHeaders(b"content-type") or ():
            if not raw.isascii() or any(b < 0x20 and b != 0x09 or b == 0x7F for b in raw):
                self._bad = BadHeader("content-type", "is not printable ASCII")
        try:
            header(self, "content-type")
        except BadHeader as bad:
            self._bad = bad
        if self._bad is not None:
            self.requestHeaders.removeHeader(b"content-type")
        super().requestReceived(command, path, version)

    def process(self) -> None:
        if self._bad is not None:
            self.site = self.channel.site
            self._error(400, errors.INVALID_REQUEST, str(self._bad))
            return
        gate = gate_of(self.channel.transport)
        if gate is not None and gate.reserved and not self._reserve_may_serve():
            self.site = self.channel.site
            self.setHeader(b"retry-after", b"5")
            self._error(503, errors.MAX_NODES_REACHED, RESERVE_REASON)
            return
        super().process()

    def _reserve_may_serve(self) -> bool:
        if self.path in RESERVE_PATHS:
            return True
        if not self.path.startswith(b"/bridge/"):
            return False
        headers = self.requestHeaders
        return any(headers.hasHeader(name) for name in SESSION_HEADERS) or b"session" in self.args

    def processingFailed(self, reason: Failure) -> Any:
        bad = reason.check(BadHeader)
        if bad is None or self.startedWriting:
            return super().processingFailed(reason)
        self._error(400, errors.INVALID_REQUEST, str(reason.value))
        return reason

    def _error(self, status: int, code: str, message: str) -> None:
        """Answer with an error envelope and finish."""
        router = self.channel.site.router
        body = encode({"type": "error", "payload": {"code": code, "message": message},
                       "timestamp": router.now_ms()})
        self.setResponseCode(status)
        self.setHeader(b"content-type", b"application/json")
        self.setHeader(b"cache-control", b"no-store")
        self.setHeader(b"content-length", b"%d" % len(body))
        self.write(body)
        self.finish()
