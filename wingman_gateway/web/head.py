"""A request head as the WebSocket upgrade reads it, and the way past twisted.web.

While nodes connect, twisted.web's reading of the upgrade request (a Python
call per header line, a ``Request`` with its header objects, the resource
lookup) was about a quarter of the gateway's time (py-spy,
``benchmarks/loadgen.py storm``). A connection's first read that holds one
complete upgrade head and nothing more is parsed here by ``httptools``
(llhttp, Node's HTTP parser, in C) instead; a resource providing
``IEarlyUpgrade`` for that path may then take the connection over without
a ``Request`` ever being made. Whatever it declines, and every other
request, goes on to twisted.web with the same bytes, as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
import httptools
from zope.interface import Interface

if TYPE_CHECKING:
    from twisted.web.server import Request

# twisted.web's own bound on a request head; a longer one takes its way.
MAX_HEAD = 16384


@attrs.define(slots=True)
class Head:
    """A request's method, target and headers (names lower-cased, values in order)."""

    method: bytes
    target: bytes
    headers: dict[bytes, list[bytes]]

    @property
    def path(self) -> bytes:
        return self.target.partition(b"?")[0]


def request_head(request: Request) -> Head:
    """The head of a request twisted.web has read."""
    headers: dict[bytes, list[bytes]] = {}
    for name, values in request.requestHeaders.getAllRawHeaders():
        headers.setdefault(name.lower(), []).extend(values)
    return Head(request.method, request.uri, headers)


class _Reader:
    """httptools' callbacks for one head."""

    __slots__ = ("target", "headers")

    def __init__(self) -> None:
        self.target = b""
        self.headers: dict[bytes, list[bytes]] = {}

    def on_url(self, url: bytes) -> None:
        self.target += url  # llhttp may hand a target over in pieces

    def on_header(self, name: bytes, value: bytes) -> None:
        values = self.headers.get(name := name.lower())
        if values is None:
            self.headers[name] = [value]
        else:
            values.append(value)


def upgrade_head(data: bytes) -> Head | None:
    """The head in ``data`` if ``data`` is exactly one complete HTTP/1.1
    upgrade request head (nothing after it); None for anything else,
    malformed or not, which twisted.web then reads as it always has."""
    if len(data) > MAX_HEAD or not data.endswith(b"\r\n\r\n"):
        return None
    reader = _Reader()
    parser = httptools.HttpRequestParser(reader)
    try:
        parser.feed_data(data)
    except httptools.HttpParserUpgrade as upgrade:
        # llhttp stops at the end of an upgrade's head, and says where.
        if upgrade.args[0] != len(data) or parser.get_http_version() != "1.1":
            return None
        return Head(parser.get_method(), reader.target, reader.headers)
    except httptools.HttpParserError:
        return None
    return None  # not an upgrade (or not complete)


class IEarlyUpgrade(Interface):
    """A resource that can take a connection over from its first request head."""

    def take(channel: Any, head: Head) -> bool:
        """Take ``channel``'s connection for ``head`` (True), or leave it to twisted.web (False)."""
