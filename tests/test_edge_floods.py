"""Floods that used to grow the gateway's memory without bound: WebSocket
PINGs whose PONGs are never read, and pipelined HTTP requests whose answers
are never read. Each is cut off at its bound while other nodes keep working."""

from __future__ import annotations

import os
import re
import socket
import struct
import time

import pytest

from harness import rawhttp
from harness.support import (
    GatewayProcess,
    NodePool,
    assert_delivers,
    health,
    raw_websocket,
    rss_kib,
)

LIMIT = 256 * 1024


pytestmark = pytest.mark.gateway("--max-buffer", LIMIT, "--rate-limit", "0")


def ping_frame(payload: bytes) -> bytes:
    """One masked client PING frame (payload up to 125 bytes)."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return struct.pack("!BB", 0x89, 0x80 | len(payload)) + mask + masked


def flood(sock: socket.socket, data: bytes, seconds: float, most: int) -> int:
    """Write ``data`` repeatedly for at most ``seconds`` and ``most`` bytes; bytes written."""
    sock.settimeout(0.2)
    sent = 0
    deadline = time.monotonic() + seconds
    while sent < most and time.monotonic() < deadline:
        try:
            sent += sock.send(data)
        except (socket.timeout, BlockingIOError):
            continue
        except OSError:  # reset: the gateway cut us off
            break
    return sent


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of the unmasked frames a server sent, in order."""
    frames = []
    while len(data) >= 2:
        opcode, length = data[0] & 0x0F, data[1] & 0x7F
        offset = 2
        if length == 126:
            length, offset = struct.unpack("!H", data[2:4])[0], 4
        elif length == 127:
            length, offset = struct.unpack("!Q", data[2:10])[0], 10
        if len(data) < offset + length:
            break
        frames.append((opcode, data[offset:offset + length]))
        data = data[offset + length:]
    return frames


def test_ping_flood_never_read_is_closed_and_memory_stays_bounded(gateway: GatewayProcess, nodes: NodePool) -> None:
    """Three clients flood PING frames and never read: each gets at most one PONG per
    read and is closed (1008) once past its PING budget; memory stays bounded and two
    honest nodes keep exchanging messages."""
    alice = nodes("alice", "room")
    bob = nodes("bob", "room")
    baseline = rss_kib(gateway.pid)
    pings = ping_frame(b"p" * 125) * 64  # 8.6 KB of PINGs would ask for 8.1 KB of PONGs
    floods = [raw_websocket(gateway.port, receive_buffer=4096) for _ in range(3)]
    written = 0
    for sock in floods:
        written += flood(sock, pings, seconds=3, most=64 * 1024 * 1024)
    reason = b"too many PING frames (at most 32 at once, then 4 per second)"
    for sock in floods:
        frames = server_frames(rawhttp.read_until_closed(sock, timeout=10, limit=64 * 1024 * 1024))
        sock.close()
        kinds = [opcode for opcode, _ in frames]
        assert kinds[-1] == 0x8, kinds  # the last frame is the close
        assert frames[-1][1] == struct.pack("!H", 1008) + reason
        assert kinds.count(0xA) <= 32, kinds.count(0xA)  # PONGs: never one per PING
    assert gateway.log.count("too many PING frames (at most 32") == 3
    assert len(re.findall(r"closing tcp4:127\.0\.0\.1:\d+: too many PING", gateway.log)) == 3  # the peer, named
    peak = rss_kib(gateway.pid)
    assert peak - baseline < 16 * 1024, (baseline, peak)
    assert_delivers(alice, bob, "room")
    assert_delivers(bob, alice, "room")


@pytest.mark.gateway("--max-buffer", "1024")
def test_pings_within_the_budget_get_the_latest_pong(gateway: GatewayProcess) -> None:
    """Two PINGs in one read are answered by one PONG carrying the latest payload."""
    sock = raw_websocket(gateway.port, receive_buffer=65536)
    try:
        sock.sendall(ping_frame(b"first") + ping_frame(b"second"))
        sock.settimeout(5)
        data = b""
        for _ in range(100):
            data += sock.recv(4096)
            if server_frames(data):
                break
        assert server_frames(data)[0] == (0xA, b"second")
    finally:
        sock.close()


def test_pipelined_requests_never_read_are_cut_off(gateway: GatewayProcess, nodes: NodePool) -> None:
    """13 MB of pipelined GET /health without reading: the gateway stops reading from
    the connection and closes it (unread answers past --max-buffer, or the head
    deadline); memory stays bounded; others are served."""
    alice = nodes("alice", "room")
    bob = nodes("bob", "room")
    baseline = rss_kib(gateway.pid)
    request = f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{gateway.port}\r\n\r\n".encode()
    batch = request * 2048
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", gateway.port))
    written = flood(sock, batch, seconds=20, most=13 * 1024 * 1024)
    peak = rss_kib(gateway.pid)
    # Either its unread answers passed the bound in one turn and it was cut off, or
    # the gateway stopped reading from it (its answers were not read) and the
    # request it had half sent missed the head deadline.
    closed = gateway.wait_for(r"cutting off HTTP client \S+: (\d+) bytes of answers unread \(limit 262144\)"
                              r"|request head from \S+ not complete within 10 s", timeout=30)
    assert closed.group(1) is None or int(closed.group(1)) > LIMIT
    rawhttp.read_until_closed(sock, timeout=10, limit=64 * 1024 * 1024)
    sock.close()
    # It could send only part of the 13 MB before being cut off.
    assert 0 < written < 13 * 1024 * 1024, written
    assert peak - baseline < 24 * 1024, (baseline, peak)
    assert health(gateway)["status"] == "healthy"
    assert_delivers(alice, bob, "room")
