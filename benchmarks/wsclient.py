"""A minimal WebSocket client on raw non-blocking sockets, for load generation.

Why hand-written: the receive path has to absorb about a million frames a
second on one core. A WebSocket library builds objects, runs callbacks and
validates UTF-8 for every frame; here frames are walked by their headers
only, over large ``recv_into`` reads into one shared buffer, and JSON is
decoded only for the frames a measurement needs.

Only what the gateway uses is implemented (RFC 6455): the HTTP/1.1 Upgrade
handshake, masked client frames, unmasked unfragmented server frames.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import os
import select
import socket
import struct
import time
from typing import Any, Callable

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# A broadcast as the gateway (and the baseline server) frames it.
BROADCAST = b'{"type":"broadcast"'
RECV_SIZE = 1 << 20
_LINGER_RESET = struct.pack("ii", 1, 0)


def accept_key(key: bytes) -> bytes:
    """The Sec-WebSocket-Accept value a server must answer ``key`` with."""
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def mask_payload(data: bytes, mask: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``mask`` (one big-int operation, not a byte loop)."""
    size = len(data)
    if not size:
        return data
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(size, "little")


def client_frame(payload: bytes, mask: bytes, opcode: int = 0x1) -> bytes:
    """One final, masked client frame."""
    size = len(payload)
    if size < 126:
        head = bytes((0x80 | opcode, 0x80 | size))
    elif size < 65536:
        head = bytes((0x80 | opcode, 0xFE)) + size.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0xFF)) + size.to_bytes(8, "big")
    return head + mask + mask_payload(payload, mask)


def split_frames(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Complete server frames in ``data`` as (first byte, payload), and the rest.

    The slow, general walk for the control plane (handshakes, acks); the hot
    loops use ``count_frames`` and ``decode_frames``.
    """
    frames: list[tuple[int, bytes]] = []
    pos, end = 0, len(data)
    while pos + 2 <= end:
        size = data[pos + 1] & 0x7F
        start = pos + 2
        if size == 126:
            start = pos + 4
            if start > end:
                break
            size = int.from_bytes(data[pos + 2 : start], "big")
        elif size == 127:
            start = pos + 10
            if start > end:
                break
            size = int.from_bytes(data[pos + 2 : start], "big")
        if start + size > end:
            break
        frames.append((data[pos], data[start : start + size]))
        pos = start + size
    return frames, data[pos:]


def count_frames(buf: bytearray, end: int, others: list[bytes]) -> tuple[int, int]:
    """Walk the complete frames in ``buf[:end]``; count broadcasts by prefix.

    Returns (offset of the first incomplete frame, broadcasts seen). Any
    other frame (presence, heartbeat, control) is copied to ``others``.
    This is the per-frame hot path: header bytes, one prefix test, nothing else.
    """
    pos = 0
    count = 0
    startswith = buf.startswith
    while pos + 2 <= end:
        size = buf[pos + 1]
        if size < 126:
            start = pos + 2
        elif size == 126:
            start = pos + 4
            if start > end:
                break
            size = (buf[pos + 2] << 8) | buf[pos + 3]
        else:
            start = pos + 10
            if start > end:
                break
            size = int.from_bytes(buf[pos + 2 : start], "big")
        nxt = start + size
        if nxt > end:
            break
        if buf[pos] == 0x81 and startswith(BROADCAST, start):
            count += 1
        else:
            others.append(bytes(buf[pos:nxt]))
        pos = nxt
    return pos, count


def decode_frames(
    buf: bytearray,
    end: int,
    others: list[bytes],
    now_ns: int,
    since_ns: int,
    latencies: list[int],
    last_seq: list[int],
    release: list[int] | None,
) -> tuple[int, int, int]:
    """Like ``count_frames``, but decode each broadcast's JSON.

    For a broadcast of message ``{"t", "s", "n"}`` sent at or after
    ``since_ns``, ``now_ns - t`` goes to ``latencies``; the per-sender
    sequence is checked against ``last_seq`` (a gap, repeat or reorder is
    an order error); with ``release``, ``release[s]`` is bumped (the probe
    receiver frees one window slot of sender ``s``).
    Returns (offset of the first incomplete frame, broadcasts, order errors).
    """
    pos = 0
    count = 0
    errors = 0
    loads = json.loads
    record = latencies.append
    startswith = buf.startswith
    while pos + 2 <= end:
        size = buf[pos + 1]
        if size < 126:
            start = pos + 2
        elif size == 126:
            start = pos + 4
            if start > end:
                break
            size = (buf[pos + 2] << 8) | buf[pos + 3]
        else:
            start = pos + 10
            if start > end:
                break
            size = int.from_bytes(buf[pos + 2 : start], "big")
        nxt = start + size
        if nxt > end:
            break
        if buf[pos] == 0x81 and startswith(BROADCAST, start):
            count += 1
            message = loads(buf[start:nxt])["payload"]
            sender = message["s"]
            seq = message["n"]
            if seq != last_seq[sender] + 1:
                errors += 1
            last_seq[sender] = seq
            sent = message["t"]
            if sent >= since_ns:
                record(now_ns - sent)
            if release is not None:
                release[sender] += 1
        else:
            others.append(bytes(buf[pos:nxt]))
        pos = nxt
    return pos, count, errors


def send_all(sock: socket.socket, data: bytes, timeout: float = 10.0) -> None:
    """Send everything on a non-blocking socket, waiting briefly if its buffer is full.

    The gateway never stops reading, so a full buffer clears quickly; this
    keeps the senders simple without an output queue per connection.
    """
    view = memoryview(data)
    deadline = None
    while view:
        try:
            sent = sock.send(view)
        except BlockingIOError:
            sent = 0
        view = view[sent:]
        if view:
            if deadline is None:
                deadline = time.monotonic() + timeout
            elif time.monotonic() > deadline:
                raise TimeoutError("send stalled")
            waiter = select.poll()
            waiter.register(sock.fileno(), select.POLLOUT)
            waiter.poll(50)


class Conn:
    """One client connection and its handshake/registration state."""

    __slots__ = ("sock", "fd", "index", "name", "mask", "key", "state", "inbuf", "node_id", "replies", "closed")

    CONNECTING, HANDSHAKE, REGISTERING, READY = range(4)

    def __init__(self, sock: socket.socket, index: int, name: str) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.index = index
        self.name = name
        # One mask key per connection, from the OS's random source.
        self.mask = os.urandom(4)
        self.key = base64.b64encode(os.urandom(16))
        self.state = Conn.CONNECTING
        self.inbuf = b""
        self.node_id: str | None = None
        self.replies: dict[str, dict[str, Any]] = {}
        self.closed: str | None = None

    def frame(self, envelope: dict[str, Any]) -> bytes:
        return client_frame(json.dumps(envelope, separators=(",", ":")).encode(), self.mask)

    def frame_bytes(self, payload: bytes) -> bytes:
        return client_frame(payload, self.mask)

    def send(self, envelope: dict[str, Any]) -> None:
        send_all(self.sock, self.frame(envelope))

    def handle_other(self, first: int, payload: bytes) -> None:
        """A frame the hot loops do not count: answer heartbeats, note a close."""
        if first == 0x89:
            send_all(self.sock, client_frame(payload, self.mask, 0xA))
        elif first == 0x88:
            self.closed = f"close frame {payload[:2].hex()} {payload[2:].decode(errors='replace')}"
        elif first == 0x81 and payload.startswith(b'{"type":"ping"'):
            send_all(self.sock, client_frame(b'{"type":"pong"}', self.mask))

    def handle_raw(self, frame: bytes) -> None:
        """``handle_other`` for one whole raw frame, as the hot loops collect them."""
        for first, payload in split_frames(frame)[0]:
            self.handle_other(first, payload)


class Pool:
    """Client connections to one port, multiplexed on one epoll."""

    def __init__(self, port: int, *more: int, place: Callable[[int], int] | None = None) -> None:
        """Connections go to ``port``, or over ``port`` and ``more``: by ``place(index)``, else round-robin."""
        self.port = port
        self.ports = (port, *more)
        self.place = place or (lambda index: index % len(self.ports))
        self.ep = select.epoll()
        self.conns: dict[int, Conn] = {}

    def __len__(self) -> int:
        return len(self.conns)

    # -- control plane ----------------------------------------------------

    def _start(self, index: int, name: str) -> Conn:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        code = sock.connect_ex(("127.0.0.1", self.ports[self.place(index)]))
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            raise OSError(code, os.strerror(code))
        conn = Conn(sock, index, name)
        self.conns[conn.fd] = conn
        self.ep.register(conn.fd, select.EPOLLOUT)
        return conn

    def _advance(self, conn: Conn, events: int) -> None:
        """Move one connection along connect -> upgrade -> register."""
        if conn.state == Conn.CONNECTING:
            code = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                raise OSError(code, f"connect: {os.strerror(code)}")
            request = (
                f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {conn.key.decode()}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
            send_all(conn.sock, request)
            conn.state = Conn.HANDSHAKE
            self.ep.modify(conn.fd, select.EPOLLIN)
            return
        data = conn.sock.recv(65536)
        if not data:
            raise ConnectionError(f"{conn.name}: closed by the server during set-up")
        conn.inbuf += data
        if conn.state == Conn.HANDSHAKE:
            head, sep, rest = conn.inbuf.partition(b"\r\n\r\n")
            if not sep:
                return
            lines = head.split(b"\r\n")
            if not lines[0].startswith(b"HTTP/1.1 101"):
                raise ConnectionError(f"{conn.name}: upgrade refused: {lines[0]!r}")
            headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(b":") for l in lines[1:])}
            if headers.get(b"sec-websocket-accept") != accept_key(conn.key):
                raise ConnectionError(f"{conn.name}: bad Sec-WebSocket-Accept")
            conn.inbuf = rest
            conn.state = Conn.REGISTERING
            conn.send({"type": "register", "payload": {"name": conn.name}, "messageId": "reg"})
        self._read_frames(conn)
        if conn.state == Conn.REGISTERING and "reg" in conn.replies:
            reply = conn.replies.pop("reg")
            if reply.get("type") != "ack":
                raise ConnectionError(f"{conn.name}: register refused: {reply}")
            conn.node_id = reply["payload"]["nodeId"]
            conn.state = Conn.READY

    def _read_frames(self, conn: Conn) -> None:
        frames, conn.inbuf = split_frames(conn.inbuf)
        for first, payload in frames:
            if first == 0x81 and not payload.startswith(BROADCAST):
                reply = json.loads(payload)
                if "messageId" in reply:
                    conn.replies[str(reply["messageId"])] = reply
                    continue
            conn.handle_other(first, payload)

    def open_many(self, count: int, prefix: str, concurrency: int = 40, timeout: float = 120.0) -> list[Conn]:
        """Connect, upgrade and register ``count`` more nodes.

        At most ``concurrency`` are being set up at once, so the server's
        listen backlog (Twisted's default is 50) is never overrun.
        """
        first = len(self.conns)
        todo = list(range(first, first + count))
        todo.reverse()
        busy: dict[int, Conn] = {}
        done: list[Conn] = []
        deadline = time.monotonic() + timeout
        while todo or busy:
            while todo and len(busy) < concurrency:
                index = todo.pop()
                conn = self._start(index, f"{prefix}{index:05d}")
                busy[conn.fd] = conn
            if time.monotonic() > deadline:
                raise TimeoutError(f"set-up of {count} nodes not done in {timeout:g} s ({len(done)} done)")
            for fd, events in self.ep.poll(0.2):
                conn = self.conns[fd]
                if conn.state == Conn.READY:
                    self.service_one(conn)
                    continue
                self._advance(conn, events)
                if conn.state == Conn.READY:
                    del busy[fd]
                    done.append(conn)
        done.sort(key=lambda c: c.index)
        return done

    def service_one(self, conn: Conn) -> None:
        """Read what one connection has; keep replies, answer heartbeats."""
        try:
            data = conn.sock.recv(RECV_SIZE)
        except BlockingIOError:
            return
        if not data:
            conn.closed = conn.closed or "connection closed by the server"
            self.ep.unregister(conn.fd)
            return
        conn.inbuf += data
        self._read_frames(conn)

    def service(self, seconds: float) -> None:
        """Read (and answer heartbeats on) every connection for ``seconds``."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            for fd, _ in self.ep.poll(min(left, 0.1)):
                self.service_one(self.conns[fd])

    def request(
        self, conns: list[Conn], build: Callable[[Conn], dict[str, Any]], timeout: float = 30.0
    ) -> list[dict[str, Any]]:
        """Send one request on each connection and wait for every ack."""
        for conn in conns:
            envelope = build(conn)
            envelope["messageId"] = "req"
            conn.send(envelope)
        deadline = time.monotonic() + timeout
        waiting = {conn.fd for conn in conns}
        replies: dict[int, dict[str, Any]] = {}
        while waiting:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(waiting)} requests unanswered")
            for fd, _ in self.ep.poll(0.1):
                conn = self.conns[fd]
                self.service_one(conn)
                if fd in waiting and "req" in conn.replies:
                    reply = conn.replies.pop("req")
                    if reply.get("type") != "ack":
                        raise RuntimeError(f"{conn.name}: request refused: {reply}")
                    replies[fd] = reply
                    waiting.discard(fd)
        return [replies[conn.fd] for conn in conns]

    def close_all(self) -> None:
        """Reset every connection (no TIME_WAIT left behind for the next run)."""
        for conn in self.conns.values():
            try:
                conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            except OSError:
                pass
            conn.sock.close()
        self.conns.clear()
        self.ep.close()
