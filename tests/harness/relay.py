"""A TCP relay on loopback whose connections a test can cut (abort) at will.

It runs on a thread of its own with plain sockets, so it relays for a
client on any event loop (Twisted's reactor, or asyncio holding the
thread). ``cut()`` resets every relayed connection, both sides (SO_LINGER
0: the peers see a reset, as when a network path dies), and the relay
keeps accepting new connections; ``hold()`` cuts them and resets every new
one until ``release()`` (a path that stays down for a while). With
``lag_after`` the answers to a client that has sent those bytes (say
``SUBSCRIBE``) reach it ``lag`` seconds late, in order: one connection slow
while the others are not.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time

_RESET = struct.pack("ii", 1, 0)


class Relay:
    """Listens on a free 127.0.0.1 port and forwards every connection to ``port``."""

    def __init__(self, port: int, lag_after: bytes | None = None, lag: float = 0.0) -> None:
        self.target = ("127.0.0.1", port)
        self.lag_after, self.lag = lag_after, lag
        self._clients: set[socket.socket] = set()
        self._slow: set[socket.socket] = set()  # clients whose answers come late
        self._late: list[tuple[float, socket.socket, bytes]] = []  # (when, to whom, what), in order
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self._peer: dict[socket.socket, socket.socket] = {}
        self._cuts = 0
        self._cut_done = threading.Event()
        self._stopping = False
        self.refusing = False
        self._thread = threading.Thread(target=self._run, name="relay", daemon=True)
        self._thread.start()

    def cut(self, timeout: float = 5.0) -> int:
        """Abort every relayed TCP connection, both sides; how many pairs there were."""
        self._cut_done.clear()
        self._cuts += 1
        if not self._cut_done.wait(timeout):
            raise AssertionError("the relay did not cut within the timeout")
        return self._last_cut

    def hold(self) -> int:
        """Cut every connection and reset every new one until ``release``."""
        self.refusing = True
        return self.cut()

    def release(self) -> None:
        self.refusing = False

    def stop(self) -> None:
        self._stopping = True
        self._thread.join(5)
        self.listener.close()

    def _abort_all(self) -> int:
        pairs = len(self._peer) // 2
        self._late.clear()
        for sock in list(self._peer):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
            sock.close()
        self._peer.clear()
        return pairs

    def _drop(self, sock: socket.socket) -> None:
        self._late = [item for item in self._late if item[1] is not sock and item[1] is not self._peer.get(sock)]
        peer = self._peer.pop(sock, None)
        sock.close()
        if peer is not None:
            self._peer.pop(peer, None)
            peer.close()

    def _run(self) -> None:
        seen_cuts = 0
        deadline = time.monotonic() + 600  # bounded, whatever the test does
        while not self._stopping and time.monotonic() < deadline:
            if self._cuts != seen_cuts:
                seen_cuts = self._cuts
                self._last_cut = self._abort_all()
                self._cut_done.set()
            while self._late and self._late[0][0] <= time.monotonic():
                _, client, data = self._late.pop(0)
                try:
                    client.sendall(data)
                except OSError:
                    self._drop(client)
            readable, _, _ = select.select([self.listener, *self._peer], [], [], 0.005 if self._late else 0.02)
            for sock in readable:
                if sock is self.listener:
                    client, _ = self.listener.accept()
                    if self.refusing:
                        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
                        client.close()
                        continue
                    upstream = socket.create_connection(self.target, timeout=5)
                    self._peer[client], self._peer[upstream] = upstream, client
                    self._clients.add(client)
                    continue
                if sock not in self._peer:
                    continue  # dropped with its peer in this round
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    self._drop(sock)
                    continue
                if self.lag_after is not None and sock in self._clients and self.lag_after in data:
                    self._slow.add(sock)
                target = self._peer[sock]
                if target in self._slow:
                    self._late.append((time.monotonic() + self.lag, target, data))
                    continue
                try:
                    target.sendall(data)
                except OSError:
                    self._drop(sock)
        self._abort_all()
