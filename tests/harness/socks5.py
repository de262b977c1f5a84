"""A SOCKS5 server for tests (loopback only) that forwards every connection to one port.

It stands in for Tor's SOCKS port: it records what each client asked for
(the address type and the host name, so a test can see that a ``.onion``
name was handed over and not looked up) and connects it to the gateway.
"""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
from typing import Any

import attrs

DOMAIN = 3  # SOCKS5 address type: a host name, resolved by the server


@attrs.frozen
class Request:
    address_type: int
    host: str
    port: int


class Socks5Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.requests: list[Request] = []
        super().__init__(("127.0.0.1", 0), _Handler)
        self.port = self.server_address[1]
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(5)


class _Handler(socketserver.BaseRequestHandler):
    server: Socks5Server

    def _read(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = self.request.recv(count - len(data))
            if not chunk:
                raise ConnectionError("client went away")
            data += chunk
        return data

    def handle(self) -> None:
        self.request.settimeout(30)
        version, methods = self._read(2)
        assert version == 5
        self._read(methods)
        self.request.sendall(b"\x05\x00")  # no authentication
        _, command, _, kind = self._read(4)
        if kind == DOMAIN:
            host = self._read(self._read(1)[0]).decode("ascii")
        elif kind == 1:
            host = socket.inet_ntoa(self._read(4))
        else:
            host = socket.inet_ntop(socket.AF_INET6, self._read(16))
        (port,) = struct.unpack("!H", self._read(2))
        self.server.requests.append(Request(kind, host, port))
        if command != 1:  # CONNECT only
            self.request.sendall(b"\x05\x07\x00\x01" + bytes(6))
            return
        upstream = socket.create_connection(("127.0.0.1", self.server.target_port), timeout=10)
        self.request.sendall(b"\x05\x00\x00\x01" + bytes(6))
        self.request.settimeout(None)
        upstream.settimeout(None)
        pump = threading.Thread(target=_copy, args=(upstream, self.request), daemon=True)
        pump.start()
        _copy(self.request, upstream)
        pump.join(10)


def _copy(source: Any, sink: Any) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for end in (sink, source):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
