"""A reverse proxy on loopback that refuses WebSocket upgrades, as some
corporate proxies do; with ``--block-sse`` it refuses event streams too, and
with ``--hold-sse`` it answers them with headers and then holds every byte
back, as a buffering proxy does.

Usage: python tests/blocking_proxy.py GATEWAY_PORT [--block-sse | --hold-sse]
Prints ``proxy listening on PORT`` and one line per request it handles.
"""

from __future__ import annotations

import argparse

from twisted.internet import reactor
from twisted.web.proxy import ReverseProxyResource
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site


class Refusing(Resource):
    """Answers 403 to upgrades (and event streams); passes the rest to the gateway."""

    isLeaf = True

    def __init__(self, target_port: int, block_sse: bool, hold_sse: bool) -> None:
        super().__init__()
        self.target_port = target_port
        self.block_sse = block_sse
        self.hold_sse = hold_sse

    def render(self, request: Request) -> bytes:
        path = request.uri.decode("latin-1")
        upgrade = (request.getHeader("upgrade") or "").lower()
        if upgrade == "websocket" or (self.block_sse and path.startswith("/bridge/sse")):
            print(f"refused {request.method.decode()} {path.split('?')[0]}", flush=True)
            request.setResponseCode(403)
            request.setHeader(b"content-type", b"text/plain")
            return b"Forbidden by proxy policy\n"
        if self.hold_sse and path.startswith("/bridge/sse"):
            print(f"held {request.method.decode()} {path.split('?')[0]}", flush=True)
            request.setHeader(b"content-type", b"text/event-stream")
            request.write(b"")  # the headers go out; the body never does
            return NOT_DONE_YET
        print(f"passed {request.method.decode()} {path.split('?')[0]}", flush=True)
        # This resource is a leaf: the proxy gets the whole path at once.
        upstream = ReverseProxyResource("127.0.0.1", self.target_port, request.path)
        return upstream.render(request)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("target_port", type=int)
    parser.add_argument("--block-sse", action="store_true")
    parser.add_argument("--hold-sse", action="store_true")
    args = parser.parse_args()
    site = Site(Refusing(args.target_port, args.block_sse, args.hold_sse))
    site.noisy = False
    site.log = lambda request: None  # type: ignore[method-assign]
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    print(f"proxy listening on {port.getHost().port}", flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
