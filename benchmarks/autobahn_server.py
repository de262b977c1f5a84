"""A bare Autobahn WebSocket server: the yardstick for connection set-up.

Plain TCP straight into Autobahn's ``WebSocketServerProtocol`` (no
twisted.web, no routing, no timers): whatever rate of opening handshakes it
reaches is what Autobahn itself costs on this core. Text messages are
answered with an ack so that a client can also time a request round trip.

Run: ``python benchmarks/autobahn_server.py --port 0`` (prints the port).
"""

from __future__ import annotations

import argparse

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import reactor


class Echo(WebSocketServerProtocol):
    """Answers every text message with a fixed ack frame."""

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.sendMessage(b'{"type":"ack","messageId":"reg","payload":{"nodeId":"x"}}')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--interface", default="127.0.0.1")
    parser.add_argument("--backlog", type=int, default=50)
    args = parser.parse_args()
    factory = WebSocketServerFactory()
    factory.protocol = Echo
    factory.noisy = False
    port = reactor.listenTCP(args.port, factory, backlog=args.backlog, interface=args.interface)
    host = port.getHost()
    print(f"autobahn listening on tcp ({host.host}:{host.port})", flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
