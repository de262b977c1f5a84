"""The ``wingman`` subsystem: protocol v1 as newline-delimited JSON on an SSH channel.

``LineConnection`` is one more ``IConnection`` adapter over the shared
Router (like the WebSocket one): one envelope per line in, one per line out.
``GatewaySession`` is Conch's session channel with everything but that
subsystem refused, each refusal explained on the channel's stderr.
"""

from __future__ import annotations

import struct
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, cast

from twisted.conch.ssh import common, connection
from twisted.conch.ssh.session import SSHSession
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from wingman_gateway.connection import (
    ABORT_GRACE,
    CLOSE_NORMAL,
    IConnection,
    Outbound,
    cut_off,
)
from wingman_gateway.envelope import encode
from wingman_gateway.logs import get_logger
from wingman_gateway.router import Router
from wingman_gateway.sockets import socket_transport, unsent_bytes

if TYPE_CHECKING:
    from wingman_gateway.transports.ssh.server import GatewayAvatar

log = get_logger("wingman_gateway.ssh")

SUBSYSTEM = b"wingman"
# Key under which a broadcast's line (envelope + newline) is cached on its Outbound.
_LINE = "line"
# Data a client may send on a session channel before it asks for the subsystem.
EARLY_DATA_LIMIT = 64 * 1024
HOW_TO = (
    "this SSH server runs no shell or commands; "
    "join as a node with `ssh -s HOST wingman` (one JSON envelope per line), "
    "or forward a local port to the gateway with -L"
)


class LineSplitter:
    """Splits a byte stream at newlines; lines over ``limit`` bytes are
    discarded as they arrive, never buffered whole."""

    def __init__(self, limit: int, on_line: Callable[[bytes], None],
                 on_too_long: Callable[[int], None]) -> None:
        self.limit = limit
        self._on_line = on_line
        self._on_too_long = on_too_long
        self._buffer = bytearray()
        self._discarded = 0  # bytes of an over-long line dropped so far

    def feed(self, data: bytes) -> None:
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            piece = data[start:end]
            start = end + 1
            if self._discarded:
                size, self._discarded = self._discarded + len(piece), 0
                self._on_too_long(size)
            elif self._buffer:
                self._buffer += piece
                line = bytes(self._buffer)
                self._buffer.clear()
                self._line(line)
            else:
                self._line(piece)
        rest = len(data) - start
        if self._discarded:
            self._discarded += rest
        elif len(self._buffer) + rest > self.limit:
            self._discarded = len(self._buffer) + rest
            self._buffer.clear()
        elif rest:
            self._buffer += data[start:]

    def _line(self, line: bytes) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > self.limit:
            self._on_too_long(len(line))
        elif line.strip():
            self._on_line(line)


@implementer(IConnection)
class LineConnection(Protocol):
    """One node on an SSH channel: the Router's connection interface over lines.

    Lines wait in a queue of our own while the client's SSH window is
    full (Conch's channel buffer is one growing ``bytes``); the queue, the
    channel's buffer and the unsent bytes of the SSH socket together are
    held to ``--max-buffer``.
    """

    transport_name = "ssh"

    def __init__(self, avatar: GatewayAvatar) -> None:
        self.avatar = avatar
        self.router: Router = avatar.router
        self.clock: IReactorTime = avatar.clock
        self.peer = avatar.describe_peer()
        self.session: Any = None
        self._channel: GatewaySession | None = None
        self._open = False
        self._closing = False
        self._lost = False
        self._queue: deque[bytes] = deque()
        self._queued = 0
        self._abort_call: Any = None
        self._socket: Any = None
        self._splitter = LineSplitter(self.router.limits.max_payload, self._line, self._too_long)

    @property
    def channel(self) -> GatewaySession:
        """The SSH channel this connection runs on (known once it is made)."""
        assert self._channel is not None, "used before connectionMade"
        return self._channel

    # -- lifecycle -------------------------------------------------------

    def connectionMade(self) -> None:
        self._channel = self.transport.session  # type: ignore[union-attr]  # Conch's session wrapper carries .session
        self.channel.line_connection = self
        self._socket = socket_transport(self.channel.conn.transport)  # type: ignore[union-attr]  # an open channel has its connection
        self._open = True
        self.session = self.router.connect(self, grant=self.avatar.identity.entry.grant())
        log.debug("SSH node channel opened by {peer}", peer=self.peer)

    def connectionLost(self, reason: Failure | None = None) -> None:
        """Conch says the channel is going (it may still drain): the node leaves."""
        self._open = False
        self.router.disconnect(self.session, "ssh channel closed")

    def channel_closed(self) -> None:
        """Both sides closed the channel: nothing more is sent or aborted."""
        self._lost = True
        self._open = False
        self._queue.clear()
        self._queued = 0
        if self._abort_call is not None and self._abort_call.active():
            self._abort_call.cancel()
        self.router.disconnect(self.session, "ssh channel closed")

    def input_ended(self) -> None:
        """The client sent EOF: the node leaves; what is queued for it still goes out."""
        self.router.disconnect(self.session, "end of input")
        if self._open:
            self._open = False
            self._exit_status(0)
        self._finish()

    def _exit_status(self, status: int) -> None:
        channel = self.channel
        assert channel.conn is not None  # an open channel has its connection
        channel.conn.sendRequest(channel, b"exit-status", struct.pack(">L", status))

    # -- incoming --------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._open:
            self._splitter.feed(data)

    def _line(self, line: bytes) -> None:
        self.router.receive(self.session, line)

    def _too_long(self, size: int) -> None:
        if not self.session.closed:
            self.router.refuse(self.session, self.router.too_large(size))

    # -- IConnection -----------------------------------------------------

    def send(self, message: Outbound) -> None:
        if not self._open:
            return
        line = message.frames.get(_LINE)
        if line is None:
            line = message.frames[_LINE] = message.data + b"\n"
        self._write(line)

    def close(self, status: int, reason: str) -> None:
        """The end of a WebSocket's close frame, for lines: a last ``close``
        envelope, the reason on stderr, an exit status, then the channel closes."""
        if not self._open:
            return
        self._open = False
        channel = self.channel
        last = {"type": "close", "payload": {"code": status, "reason": reason},
                "timestamp": self.router.now_ms()}
        self._write(encode(last) + b"\n", checked=False)
        if status != CLOSE_NORMAL:
            channel.writeExtended(connection.EXTENDED_DATA_STDERR,
                                  f"wingman-gateway: {reason}\r\n".encode("utf-8"))
        self._exit_status(0 if status == CLOSE_NORMAL else 1)
        # Later, so the Router's own disconnect (with its reason) comes first.
        self.clock.callLater(0, self._finish)

    # -- outbound flow ---------------------------------------------------

    def _write(self, line: bytes, checked: bool = True) -> None:
        channel = self.channel
        if checked and not self._fits(len(line)):
            return
        if self._queue or not channel.areWriting:
            self._queue.append(line)
            self._queued += len(line)
        else:
            channel.write(line)

    def _fits(self, adding: int) -> bool:
        channel = self.channel
        pending = (self._queued + len(channel.buf or b"")
                   + unsent_bytes(self._socket) + adding)
        limit = self.router.limits.max_buffer
        if pending <= limit:
            return True
        cut_off(self, pending, limit, lambda why: self.router.disconnect(self.session, why),
                self.clock, self.abort)
        return False

    def drain(self) -> None:
        """The client's window opened again: hand queued lines to the channel."""
        channel = self.channel
        while self._queue and channel.areWriting:
            line = self._queue.popleft()
            self._queued -= len(line)
            channel.write(line)
        if self._closing and not self._queue:
            channel.loseConnection()

    def _finish(self) -> None:
        """Close the channel once everything queued has gone; abort if it never does."""
        if self._closing or self._lost:
            return
        self._closing = True
        self._abort_call = self.clock.callLater(ABORT_GRACE, self.abort)
        self.drain()

    def abort(self) -> None:
        """Drop whatever is unsent and close the channel now."""
        channel = self.channel
        self._queue.clear()
        self._queued = 0
        if channel is None or channel.localClosed:
            return
        channel.buf = b""
        channel.extBuf = []
        channel.conn.sendClose(channel)  # type: ignore[union-attr]  # not closed yet: it has its connection


class GatewaySession(SSHSession):
    """A session channel that runs only the ``wingman`` subsystem."""

    line_connection: LineConnection | None = None
    _refused = False
    _log = get_logger("wingman_gateway.ssh.conch")

    def request_subsystem(self, data: bytes) -> int:
        name = common.getNS(data)[0]
        if name != SUBSYSTEM:
            shown = name.decode("utf-8", "replace")[:40]
            return self._refuse("unknown subsystem", f"unknown subsystem {shown!r}; {HOW_TO}")
        return super().request_subsystem(data)

    def request_shell(self, data: bytes) -> int:
        return self._refuse("shell", f"shell refused: {HOW_TO}")

    def request_exec(self, data: bytes) -> int:
        # The command itself is never logged: it may hold a secret.
        return self._refuse("exec", f"command refused: {HOW_TO}")

    def request_pty_req(self, data: bytes) -> int:
        return 1  # nothing runs on it; the shell or command request that follows explains

    def request_env(self, data: bytes) -> int:
        return 0

    def request_window_change(self, data: bytes) -> int:
        return 0

    def _refuse(self, what: str, message: str) -> int:
        """Explain on stderr, exit with status 1, and close the channel.

        The request itself is answered with success: OpenSSH drops a
        channel's stderr when a request fails, and the message would be lost.
        Nothing runs.
        """
        avatar = cast("GatewayAvatar", self.avatar)  # the gateway's realm makes every avatar
        log.info("SSH {what} request refused for {peer}", what=what,
                 peer=avatar.describe_peer())
        self.writeExtended(connection.EXTENDED_DATA_STDERR,
                           f"wingman-gateway: {message}\r\n".encode("utf-8"))
        if not self._refused:
            self._refused = True
            avatar.clock.callLater(0, self._exit_refused)
        return 1

    def _exit_refused(self) -> None:
        if self.localClosed:
            return
        assert self.conn is not None  # not closed yet: it has its connection
        self.conn.sendRequest(self, b"exit-status", struct.pack(">L", 1))
        self.conn.sendEOF(self)
        self.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        if self.client is None and len(self.buf or b"") + len(data) > EARLY_DATA_LIMIT:
            self.buf = b""
            self._refuse("early data", "too much data before a subsystem was requested")
            return
        super().dataReceived(data)

    def eofReceived(self) -> None:
        if self.line_connection is not None:
            self.line_connection.input_ended()
        elif not self._refused:  # a refusal closes once its explanation is out
            self.loseConnection()

    def addWindowBytes(self, data: int) -> None:
        super().addWindowBytes(data)
        if self.line_connection is not None and self.areWriting:
            self.line_connection.drain()

    def closed(self) -> None:
        super().closed()
        if self.line_connection is not None:
            self.line_connection.channel_closed()

    def loseConnection(self) -> None:
        if self.localClosed:
            return
        super().loseConnection()
