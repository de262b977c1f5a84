"""A TCP relay on loopback whose connections a test can cut (abort) at will."""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.protocols import portforward


class _Server(portforward.ProxyServer):
    def connectionMade(self) -> None:
        self.factory.live.add(self)  # type: ignore[attr-defined]
        super().connectionMade()

    def connectionLost(self, reason: Any = None) -> None:
        self.factory.live.discard(self)  # type: ignore[attr-defined]
        super().connectionLost(reason)


class Relay:
    """Listens on a free 127.0.0.1 port and forwards every connection to ``port``."""

    def __init__(self, port: int) -> None:
        self.factory = portforward.ProxyFactory("127.0.0.1", port)
        self.factory.protocol = _Server
        self.factory.live = set()  # type: ignore[attr-defined]
        self.listening = reactor.listenTCP(0, self.factory, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.port: int = self.listening.getHost().port

    def cut(self) -> int:
        """Abort every relayed TCP connection, both sides; how many there were."""
        live = list(self.factory.live)  # type: ignore[attr-defined]
        for server in live:
            if server.peer is not None:
                server.peer.transport.abortConnection()
            server.transport.abortConnection()
        return len(live)

    def stop(self) -> Any:
        self.cut()
        return self.listening.stopListening()
