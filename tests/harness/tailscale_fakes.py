"""Stand-ins for tailscaled's LocalAPI and the Tailscale HTTP API, run as processes.

``python tailscale_fakes.py localapi SOCKET STATUS_FILE [--code N]`` answers
``GET /localapi/v0/status`` on a Unix socket with the file's bytes (as the
real daemon does: only for ``Host: local-tailscaled.sock``, 403 otherwise).

``python tailscale_fakes.py api CERT KEY DEVICES_FILE API_KEY`` serves
``GET /api/v2/tailnet/-/devices`` over HTTPS on a free loopback port, only to
``Authorization: Bearer API_KEY`` (401 otherwise).

Each prints ``ready PORT`` once listening and one ``request ...`` line per
request, so tests can see what was asked.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from twisted.internet import defer, endpoints, task
from twisted.web.resource import Resource
from twisted.web.server import Request, Site


def _say(text: str) -> None:
    print(text, flush=True)


class LocalApi(Resource):
    isLeaf = True

    def __init__(self, status_file: str, code: int) -> None:
        super().__init__()
        self.status_file, self.code = status_file, code

    def render_GET(self, request: Request) -> bytes:
        host = (request.getHeader("host") or "").split(":")[0]
        _say(f"request {request.uri.decode()} host={host}")
        if host != "local-tailscaled.sock" or request.getHeader("origin") or request.getHeader("referer"):
            request.setResponseCode(403)
            return b"invalid localapi request\n"
        if request.uri != b"/localapi/v0/status":
            request.setResponseCode(404)
            return b"404 page not found\n"
        request.setResponseCode(self.code)
        request.setHeader(b"content-type", b"application/json")
        with open(self.status_file, "rb") as status:
            return status.read()


class DevicesApi(Resource):
    isLeaf = True

    def __init__(self, devices_file: str, api_key: str) -> None:
        super().__init__()
        self.devices_file, self.api_key = devices_file, api_key

    def render_GET(self, request: Request) -> bytes:
        _say(f"request {request.uri.decode()}")
        request.setHeader(b"content-type", b"application/json")
        if request.getHeader("authorization") != f"Bearer {self.api_key}":
            request.setResponseCode(401)
            return b'{"message": "API token invalid"}'
        if request.uri != b"/api/v2/tailnet/-/devices":
            request.setResponseCode(404)
            return b'{"message": "not found"}'
        with open(self.devices_file, "rb") as devices:
            return devices.read()


async def main(reactor: Any, argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    kinds = parser.add_subparsers(dest="kind", required=True)
    local = kinds.add_parser("localapi")
    local.add_argument("socket")
    local.add_argument("status")
    local.add_argument("--code", type=int, default=200)
    api = kinds.add_parser("api")
    for name in ("cert", "key", "devices", "api_key"):
        api.add_argument(name)
    args = parser.parse_args(argv)
    if args.kind == "localapi":
        endpoint = endpoints.UNIXServerEndpoint(reactor, args.socket)
        port = await endpoint.listen(Site(LocalApi(args.status, args.code)))
        _say("ready 0")
    else:
        description = f"ssl:0:interface=127.0.0.1:privateKey={args.key}:certKey={args.cert}"
        port = await endpoints.serverFromString(reactor, description).listen(
            Site(DevicesApi(args.devices, args.api_key))
        )
        _say(f"ready {port.getHost().port}")
    await defer.Deferred()  # until killed


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, sys.argv[1:])))
