"""The bridge's twisted.web resources: ``/bridge/send``, ``poll``, ``sse``, ``ack``.

Posted envelopes go through the Router like WebSocket frames (same auth,
limits, validation and rate limiting); its direct reply becomes the HTTP
response, with a status from ``HTTP_STATUS``. Everything else the node
receives is read with a long poll or an event stream.
"""

from __future__ import annotations

import math
from typing import Any

from twisted.web.error import UnsupportedMethod
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from wingman_gateway import errors
from wingman_gateway.transports.bridge.cors import CorsPolicy
from wingman_gateway.transports.bridge.readers import PollReader, StreamReader
from wingman_gateway.transports.bridge.session import Bridge, BridgeSession
from wingman_gateway.addresses import address_text
from wingman_gateway.connection import Reply
from wingman_gateway.envelope import encode
from wingman_gateway.errors import HTTP_STATUS, GatewayError
from wingman_gateway.web.bearer import CHALLENGE, bearer_token
from wingman_gateway.web.folder import Folder
from wingman_gateway.web.headers import header, sequence_number
from wingman_gateway.web.parts import body_of, site_of

SESSION_HEADER = "x-wingman-session"
_AUTH_CODES = (errors.AUTH_FAILED, errors.NOT_REGISTERED)


def _peer(request: Request) -> str:
    address = request.getClientAddress()
    kind = getattr(address, "type", None) or "unix"
    return f"{kind.lower()}:{address_text(address)}"


def _answer(request: Request, reply: Reply, body: bytes | None = None) -> bytes:
    """Send ``reply`` with the status its outcome calls for (``body``: its bytes, if others)."""
    code = reply.code
    status = 200
    if code is not None:
        status = HTTP_STATUS.get(code, 400)
        if code == errors.RATE_LIMITED:
            wait_ms = reply.details.get("retryAfterMs") or 1000
            request.setHeader(b"retry-after", b"%d" % max(1, math.ceil(wait_ms / 1000)))
        elif code in _AUTH_CODES:
            request.setHeader(b"www-authenticate", CHALLENGE)
        elif code == errors.MAX_NODES_REACHED:
            request.setHeader(b"retry-after", b"5")
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    return reply.data if body is None else body


def _refuse(request: Request, code: str, message: str) -> bytes:
    error = GatewayError(code, message)
    reply = Reply({"type": "error", "payload": error.payload(), "timestamp": _now_ms(request)})
    return _answer(request, reply)


def _now_ms(request: Request) -> int:
    return int(site_of(request).router.now_ms())


def _secret(request: Request, query: bool) -> str | None:
    """The session secret: ``X-Wingman-Session``, ``Authorization: Bearer``, or ``?session=``."""
    given = header(request, SESSION_HEADER)
    if given and given.strip():
        return given.strip()
    bearer = bearer_token(request)
    if bearer is not None:
        return bearer
    if query:
        given = request.args.get(b"session")
        if given and given[0]:
            return bytes(given[0]).decode("utf-8", "surrogateescape")
    return None


class _Endpoint(Resource):
    """CORS, no caching and the session lookup, shared by every bridge endpoint."""

    isLeaf = True

    def __init__(self, bridge: Bridge, cors: CorsPolicy) -> None:
        super().__init__()
        self.bridge = bridge
        self.cors = cors

    def render(self, request: Request) -> Any:
        request.setHeader(b"cache-control", b"no-store")
        if not self.cors.admit(request):
            origin = header(request, "origin") or ""
            return _refuse(
                request, errors.FORBIDDEN,
                f"origin {origin[:200]!r} is not allowed to use this gateway's HTTP bridge",
            )
        if request.method == b"OPTIONS":
            self.cors.preflight(request)
            return b""
        return super().render(request)

    def render_HEAD(self, request: Request) -> Any:
        """HEAD is GET without the body: only where there is a GET (else 405, not a 500)."""
        if not hasattr(self, "render_GET"):
            allowed = [m for m in (b"GET", b"POST", b"OPTIONS") if hasattr(self, "render_" + m.decode())]
            raise UnsupportedMethod(allowed)
        return self.render_GET(request)

    def session(self, request: Request) -> BridgeSession | bytes:
        """The live session the request names, or the 401 answer to send."""
        secret = _secret(request, query=request.method == b"GET")
        if secret is None:
            return _refuse(
                request, errors.NOT_REGISTERED,
                "no bridge session: POST a register to /bridge/send, then present the "
                "session secret it returns (X-Wingman-Session or Authorization: Bearer)",
            )
        session = self.bridge.find(secret)
        if session is None:
            return _refuse(request, errors.AUTH_FAILED, "unknown or expired bridge session")
        session.touch()
        return session

    def position(self, request: Request, session: BridgeSession) -> int | bytes:
        """Where the client is: ``Last-Event-ID`` or ``?after=`` (default: all unconfirmed)."""
        given = header(request, "last-event-id")
        name = "Last-Event-ID"
        if given is None:
            raw = request.args.get(b"after")
            given = raw[0].decode("ascii", "replace") if raw else None
            name = "after"
        if given is None or given == "":
            return session.queue.confirmed
        after = sequence_number(given)
        if after is None:
            return _refuse(
                request, errors.INVALID_REQUEST,
                f"{name} must be a message sequence number (ASCII digits)",
            )
        if after > session.queue.last_seq:
            return _refuse(
                request, errors.INVALID_REQUEST,
                f"{name}={after} is beyond the last message ({session.queue.last_seq})",
            )
        return after


    def reading(self, request: Request) -> tuple[BridgeSession, int] | bytes:
        """The session and the position a read (or confirmation) starts from, or the refusal."""
        session = self.session(request)
        if isinstance(session, bytes):
            return session
        after = self.position(request, session)
        if isinstance(after, bytes):
            return after
        return session, after


class SendResource(_Endpoint):
    """``POST /bridge/send``: one envelope in, the gateway's direct reply out."""

    def render_POST(self, request: Request) -> bytes:
        body = body_of(request)
        secret = _secret(request, query=False)
        if secret is not None:
            session = self.session(request)
            if isinstance(session, bytes):
                return session
            return self._reply(request, session.receive(body))
        # No session yet: a connection of its own, kept only if it registers.
        session = self.bridge.open(_peer(request))
        replies = session.receive(body)
        if session.node.node_id is None or session.ended is not None:
            self.bridge.discard(session)
            return self._reply(request, replies)
        new_secret = self.bridge.admit(session)
        return self._reply(request, replies, new_secret)

    @staticmethod
    def _reply(request: Request, replies: list[Reply], secret: str | None = None) -> bytes:
        if not replies:
            request.setResponseCode(204)
            return b""
        reply = replies[0]
        if secret is not None:
            # The ack of a register carries the session's secret.
            return _answer(request, reply, encode(dict(reply.envelope, session=secret)))
        return _answer(request, reply)


class PollResource(_Endpoint):
    """``GET /bridge/poll?after=SEQ&timeout=S``: a long poll."""

    def render_GET(self, request: Request) -> Any:
        reading = self.reading(request)
        if isinstance(reading, bytes):
            return reading
        session, after = reading
        limit = self.bridge.options.poll_timeout
        timeout = limit
        raw = request.args.get(b"timeout")
        if raw:
            try:
                timeout = float(raw[0])
            except ValueError:
                timeout = -1.0
            if not 0 <= timeout < math.inf:
                return _refuse(
                    request, errors.INVALID_REQUEST,
                    f"timeout must be a number of seconds from 0 to {limit:g}",
                )
        PollReader(session, request, after, min(timeout, limit)).start()
        return NOT_DONE_YET


class StreamResource(_Endpoint):
    """``GET /bridge/sse``: the session's messages as server-sent events."""

    def render_GET(self, request: Request) -> Any:
        reading = self.reading(request)
        if isinstance(reading, bytes):
            return reading
        session, after = reading
        StreamReader(session, request, after).start()
        return NOT_DONE_YET


class AckResource(_Endpoint):
    """``POST /bridge/ack?after=SEQ``: confirm messages read from an event stream."""

    def render_POST(self, request: Request) -> bytes:
        if not request.args.get(b"after"):
            session = self.session(request)  # no session is refused first
            if isinstance(session, bytes):
                return session
            return _refuse(request, errors.INVALID_REQUEST, "after is required")
        reading = self.reading(request)
        if isinstance(reading, bytes):
            return reading
        session, after = reading
        session.confirm(after)
        request.setResponseCode(204)
        return b""


def bridge_resource(bridge: Bridge) -> Resource:
    """``/bridge`` with its endpoints."""
    root = Folder()
    for name, kind in (
        (b"send", SendResource),
        (b"poll", PollResource),
        (b"sse", StreamResource),
        (b"ack", AckResource),
    ):
        root.putChild(name, kind(bridge, bridge.cors))
    return root
