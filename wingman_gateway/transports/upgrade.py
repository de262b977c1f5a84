"""The plain WebSocket upgrade, answered without Autobahn's handshake.

Autobahn's ``WebSocketResource`` writes the request twisted.web parsed back
out as bytes, and Autobahn parses them a second time and sets up its
opening handshake (a timer, transport details) for a handshake that is
already complete. That was a quarter of the gateway's time while nodes
connect (py-spy, ``benchmarks/loadgen.py storm``).

Here the upgrade every client library sends (``GET``, ``Upgrade:
websocket``, ``Connection: Upgrade``, version 13, a well-formed key, no
sub-protocol, ``Origin`` or body, no header repeated; extension offers
that Autobahn parses and the gateway declines, as it declines them all)
is checked on its head (``web.head.Head``: read by httptools from a
connection's first bytes, or from the request twisted.web read) and
answered ``101`` with the bytes Autobahn would send; the connection is
then handed to the Autobahn protocol already open
(``GatewayWebSocket.open_upgraded``), and Autobahn frames from the first
byte on. Every other request, valid or not, still goes through
twisted.web and Autobahn's own handshake, so what it answers (``400``
with the reason, ``403``, ``405``, ``503``, the status page) is exactly
what it answered before.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

from autobahn.websocket.compress import PERMESSAGE_COMPRESSION_EXTENSION
from twisted.protocols.policies import ProtocolWrapper

from wingman_gateway.web.head import Head

# RFC 6455 4.2.2: the accept value is SHA-1 of the key and this GUID.
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# 16 random bytes in base64, as Autobahn checks it.
_KEY = re.compile(rb"[A-Za-z0-9+/]{22}==")
# Headers a plain upgrade must have exactly once.
_REQUIRED = (b"host", b"upgrade", b"connection", b"sec-websocket-version", b"sec-websocket-key")
# Headers whose presence needs Autobahn's own handshake (negotiation, its
# origin check, a body it would read as frames), or twisted.web's check of
# a Content-Type.
_NEGOTIATED = frozenset((
    b"sec-websocket-protocol", b"origin", b"sec-websocket-origin", b"content-length", b"transfer-encoding",
    b"content-type",
))
_EXTENSIONS = b"sec-websocket-extensions"
# What Autobahn's parser (``str.splitlines`` over Latin-1) would take for a
# line break inside a header, and bytes outside printable ASCII in the
# request target: such a request gets Autobahn's reading, not this one.
_ODD_HEADER = re.compile(rb"[\x0b\x0c\x1c-\x1e\x85]")
_PLAIN_TARGET = re.compile(rb"/(?!/)[\x21-\x22\x24-\x7e]*")  # no "#" (a fragment), no "//" (a host)


def _has_token(value: bytes, token: bytes) -> bool:
    if value.lower() == token:  # what clients send
        return True
    return any(part.strip().lower() == token for part in value.split(b","))


def plain_key(head: Head) -> bytes | None:
    """The ``Sec-WebSocket-Key`` of a plain, valid upgrade request; None for any other request."""
    if head.method != b"GET" or _PLAIN_TARGET.fullmatch(head.target) is None:
        return None
    headers = head.headers
    values: dict[bytes, bytes] = {}
    for name in _REQUIRED:
        raw = headers.get(name)
        if raw is None or len(raw) != 1:
            return None
        values[name] = raw[0].strip()
    if not _NEGOTIATED.isdisjoint(headers):
        return None
    offered = headers.get(_EXTENSIONS)
    if offered is not None and len(offered) != 1:
        return None
    host = values[b"host"]
    if b":" in host and not host.endswith(b"]") and not host.rpartition(b":")[2].strip().isdigit():
        return None  # Autobahn refuses the port; let it say so
    if (values[b"sec-websocket-version"] != b"13" or not _has_token(values[b"upgrade"], b"websocket")
            or not _has_token(values[b"connection"], b"upgrade")):
        return None
    key = values[b"sec-websocket-key"]
    if _KEY.fullmatch(key) is None:
        return None
    if _ODD_HEADER.search(b"".join(map(b"".join, headers.values()))) is not None:
        return None
    return key


def offers_declined(connection: Any, head: Head) -> bool:
    """True when ``head`` offers no extension, or only offers Autobahn's
    handshake parses and ``connection``'s options decline (the gateway
    accepts no permessage-deflate): the answer is then the plain ``101``.

    Browsers, ``websockets`` and Node's ``ws`` all offer permessage-deflate.
    The offers are read with Autobahn's own parsers, as its handshake reads them.
    """
    offered = head.headers.get(_EXTENSIONS)
    if offered is None:
        return True
    offers: list[Any] = []
    try:
        for name, params in connection._parseExtensionsHeader(offered[0].strip().decode("latin-1")):
            extension: Any = PERMESSAGE_COMPRESSION_EXTENSION.get(name)
            if extension is not None:
                offers.append(extension["Offer"].parse(params))
    except Exception:  # what Autobahn's handshake refuses (400, with its reason)
        return False
    return not offers or connection.perMessageCompressionAccept(offers) is None


def switching_head(server: str | None, extra: dict[str, Any]) -> bytes:
    """What every ``101`` says before its accept value, as Autobahn writes it
    (``server`` and ``extra`` are its factory's ``server`` and ``headers``)."""
    lines = [b"HTTP/1.1 101 Switching Protocols"]
    if server:
        lines.append(b"Server: " + server.encode("utf-8"))
    lines += [b"Upgrade: WebSocket", b"Connection: Upgrade"]
    for name, value in extra.items():
        for one in [value] if isinstance(value, str) else value:
            lines.append(f"{name}: {one}".encode("utf-8"))
    return b"\r\n".join(lines) + b"\r\nSec-WebSocket-Accept: "


def switching(key: bytes, head: bytes) -> bytes:
    """The ``101`` answer to ``key``, byte for byte as Autobahn writes it (``head``: ``switching_head``)."""
    return head + base64.b64encode(hashlib.sha1(key + _GUID).digest()) + b"\r\n\r\n"


def take_over(channel: Any, protocol: Any) -> Any:
    """Move ``channel``'s connection (a ``GatewayChannel``) to ``protocol``; returns the transport.

    As Autobahn's ``WebSocketResource`` does: the channel lets go of the
    transport, and the protocol under it (the listener's door, or TLS)
    delivers to ``protocol`` from now on. After a request twisted.web
    served, reading stays paused until the caller resumes it.
    """
    channel.stop_timers()
    transport, channel.transport = channel.transport, None
    if isinstance(transport, ProtocolWrapper):
        transport.wrappedProtocol = protocol
    elif isinstance(transport.protocol, ProtocolWrapper):
        transport.protocol.wrappedProtocol = protocol
    else:
        transport.protocol = protocol
    return transport


def resume(transport: Any) -> None:
    """Read from ``transport`` again, whoever paused it while the channel had it."""
    transport.resumeProducing()
