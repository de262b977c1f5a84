"""HTTP spoken by hand on a loopback socket, for requests no client library would send."""

from __future__ import annotations

import json
import socket
import time
from typing import Any


def open_socket(port: int, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return sock


def read_until_closed(sock: socket.socket, timeout: float = 10.0, limit: int = 1 << 20) -> bytes:
    """Everything the server sends until it closes (bounded in time and size)."""
    deadline = time.monotonic() + timeout
    data = b""
    while len(data) < limit:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"connection not closed within {timeout} s; got {data[:300]!r}")
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data


def exchange(port: int, request: bytes, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Send one raw request with ``Connection: close`` semantics; (status, headers, body)."""
    with open_socket(port, timeout) as sock:
        sock.sendall(request)
        return parse_response(read_until_closed(sock, timeout))


def parse_response(data: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    assert status_line.startswith("HTTP/1."), data[:300]
    headers = {n.strip().lower(): v.strip() for n, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def get(port: int, path: str, headers: dict[str, bytes] | None = None) -> tuple[int, dict[str, str], Any]:
    """``GET path`` with raw header bytes; (status, headers, JSON body or raw bytes)."""
    lines = b"".join(name.encode() + b": " + value + b"\r\n" for name, value in (headers or {}).items())
    request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n".encode()
               + lines + b"\r\n")
    status, response_headers, body = exchange(port, request)
    try:
        return status, response_headers, json.loads(body)
    except ValueError:
        return status, response_headers, body


def from_source(port: int, source: str, timeout: float = 5.0) -> socket.socket:
    """A connection to the gateway on 127.0.0.1 from another loopback address (e.g. 127.0.0.2)."""
    sock = socket.socket()
    sock.settimeout(timeout)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def closed_without_answer(sock: socket.socket, within: float = 2.0) -> bool:
    """True if the server closes ``sock`` within ``within`` seconds having sent nothing."""
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False
