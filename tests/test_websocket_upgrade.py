"""The WebSocket upgrade: a plain one is answered from its head (read by
httptools from the first read, or by twisted.web), anything else by
Autobahn's handshake; either way the answers are what they always were (the
bad ones byte for byte), over TCP and TLS, and a refused upgrade costs the
other nodes nothing."""

from __future__ import annotations

import base64
import hashlib
import socket
import ssl
from pathlib import Path
from typing import Iterator

import pytest
from twisted.web.test.requesthelper import DummyRequest

from harness import rawhttp
from harness.support import GatewayProcess, Node, assert_usable, make_pki, running_gateway, send_text_frame
from wingman_gateway.transports.upgrade import plain_key
from wingman_gateway.web.head import MAX_HEAD, Head, request_head, upgrade_head

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = base64.b64encode(hashlib.sha1(KEY + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
SWITCHING = (b"HTTP/1.1 101 Switching Protocols\r\nServer: AutobahnPython/%s\r\nUpgrade: WebSocket\r\n"
             b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + ACCEPT + b"\r\n\r\n")
PLAIN = {b"Upgrade": b"websocket", b"Connection": b"Upgrade", b"Sec-WebSocket-Key": KEY,
         b"Sec-WebSocket-Version": b"13"}

# (what is changed in a plain upgrade, the exact answer). These are the
# answers of Autobahn's handshake, which every such request still gets.
BAD = {
    "no key": ({b"Sec-WebSocket-Key": None}, b"HTTP/1.1 400 HTTP Sec-WebSocket-Key header missing\r\n\r\n"),
    "short key": ({b"Sec-WebSocket-Key": b"abc"},
                  b'HTTP/1.1 400 bad Sec-WebSocket-Key (length must be 24 ASCII chars) "abc"\r\n\r\n'),
    "key not base64": ({b"Sec-WebSocket-Key": b"dGhlIHNhbXBsZSBub25jZ!=="},
                       b'HTTP/1.1 400 bad character "!" in Sec-WebSocket-Key (invalid base64 encoding) '
                       b'"dGhlIHNhbXBsZSBub25jZ!=="\r\n\r\n'),
    "two keys": ({b"Sec-WebSocket-Key": [KEY, KEY]},
                 b'HTTP/1.1 400 bad Sec-WebSocket-Key (length must be 24 ASCII chars) "' + KEY + b"," + KEY
                 + b'"\r\n\r\n'),
    "version 12": ({b"Sec-WebSocket-Version": b"12"},
                   b"HTTP/1.1 400 WebSocket version 12 not supported (supported versions: 13,8)\r\n"
                   b"Sec-WebSocket-Version: 13,8\r\n\r\n"),
    "version not a number": ({b"Sec-WebSocket-Version": b"x"},
                             b'HTTP/1.1 400 could not parse HTTP Sec-WebSocket-Version header "x" in opening '
                             b"handshake request\r\n\r\n"),
    "upgrade to h2c": ({b"Upgrade": b"h2c"},
                       b'HTTP/1.1 400 HTTP Upgrade headers do not include "websocket" value (case-insensitive): '
                       b'"h2c"\r\n\r\n'),
    "no connection header": ({b"Connection": None}, b"HTTP/1.1 400 HTTP Connection header missing\r\n\r\n"),
    "POST": ({"method": b"POST"}, b'HTTP/1.1 405 HTTP method "POST" not allowed\r\n\r\n'),
    "bad deflate offer": ({b"Sec-WebSocket-Extensions": b"permessage-deflate; client_max_window_bits=99"},
                          b"HTTP/1.1 400 illegal extension parameter value '99' for parameter "
                          b"'client_max_window_bits' of extension 'permessage-deflate'\r\n\r\n"),
}


def request_bytes(port: int, changes: dict[object, object]) -> bytes:
    method = changes.get("method", b"GET")
    lines = [method + b" /ws HTTP/1.1", b"Host: 127.0.0.1:%d" % port]  # type: ignore[operator]
    headers: dict[object, object] = {**PLAIN, **{k: v for k, v in changes.items() if k != "method"}}
    for name, value in headers.items():
        for one in value if isinstance(value, list) else [] if value is None else [value]:
            lines.append(name + b": " + one)  # type: ignore[operator]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def answer(port: int, request: bytes, tls: ssl.SSLContext | None = None) -> bytes:
    """Everything sent back until the gateway closes, or the head of a 101."""
    plain = rawhttp.open_socket(port)
    with (tls.wrap_socket(plain, server_hostname="localhost") if tls else plain) as sock:
        sock.sendall(request)
        data = b""
        sock.settimeout(5)
        while not data.startswith(b"HTTP/1.1 101") or b"\r\n\r\n" not in data:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            data += chunk
        return data


class Served:
    def __init__(self, gateway: GatewayProcess, tls: ssl.SSLContext | None) -> None:
        self.gateway, self.tls = gateway, tls
        scheme = "wss" if tls else "ws"
        self.url = f"{scheme}://localhost:{gateway.port}/ws"

    def node(self, name: str) -> Node:
        node = Node(self.url, ssl=self.tls) if self.tls else Node(self.url)
        assert node.register(name)["type"] == "ack"
        return node


@pytest.fixture(scope="module", params=["tcp", "tls"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    if request.param == "tcp":
        with running_gateway() as gateway:
            yield Served(gateway, None)
        return
    pki = make_pki(Path(tmp_path_factory.mktemp("pki")))
    with running_gateway("--listen", pki.endpoint()) as gateway:
        yield Served(gateway, pki.client_context())


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_upgrade_gets_the_handshakes_exact_answer_and_others_keep_working(served: Served, case: str) -> None:
    bystander = served.node("bystander")
    changes, expected = BAD[case]
    try:
        assert answer(served.gateway.port, request_bytes(served.gateway.port, changes), served.tls) == expected
        assert_usable(bystander)
        late = served.node("late")  # a new node still gets in
        assert_usable(late)
        late.close()
    finally:
        bystander.close()


def test_no_upgrade_header_gets_autobahns_status_page(served: Served) -> None:
    data = answer(served.gateway.port, request_bytes(served.gateway.port, {b"Upgrade": None}), served.tls)
    status, headers, body = rawhttp.parse_response(data)
    assert (status, headers["content-type"]) == (200, "text/html; charset=UTF-8"), data[:200]
    assert b"I am not Web server, but a <b>WebSocket Endpoint" in body


@pytest.mark.parametrize("changes", [
    {},  # plain: answered from the parsed request
    {b"Sec-WebSocket-Extensions": b"permessage-deflate; client_max_window_bits"},  # declined, as before
    {b"Sec-WebSocket-Extensions": b"x-unknown; a=1"},
    {b"Sec-WebSocket-Protocol": b"chat"},  # Autobahn's handshake: no sub-protocol is chosen
    {b"Upgrade": b"WebSocket, h2c", b"Connection": b"keep-alive, Upgrade"},
])
def test_every_accepted_upgrade_gets_the_same_101(served: Served, changes: dict[object, object]) -> None:
    from autobahn import __version__

    data = answer(served.gateway.port, request_bytes(served.gateway.port, changes), served.tls)
    assert data == SWITCHING % __version__.encode(), data


def test_nodes_of_either_handshake_talk_to_each_other(served: Served) -> None:
    """``websockets`` offers permessage-deflate; an Origin of the gateway's own takes Autobahn's handshake."""
    offered = served.node("offers-deflate")
    scheme = "https" if served.tls else "http"
    origin = f"{scheme}://localhost:{served.gateway.port}"
    own_page = Node(served.url, ssl=served.tls, origin=origin) if served.tls else Node(served.url, origin=origin)
    try:
        assert own_page.register("own-page")["type"] == "ack"
        for node in (offered, own_page):
            assert node.join("both")["type"] == "ack"
        offered.request("broadcast", {"groupName": "both", "message": "hello"})
        got = own_page.recv_type("broadcast")
        assert got["payload"] == "hello" and got["fromName"] == "offers-deflate"
        assert offered.ws.response.headers.get("Sec-WebSocket-Extensions") is None  # none negotiated
    finally:
        offered.close()
        own_page.close()


def _request(uri: bytes = b"/ws", method: bytes = b"GET", **headers: bytes | list[bytes]) -> Head:
    """The head of a request as twisted.web has read it."""
    request = DummyRequest([b"ws"])
    request.method, request.uri = method, uri
    values = {b"host": b"gw.example:3000", **{k: v for k, v in PLAIN.items()},
              **{k.replace("_", "-").encode(): v for k, v in headers.items()}}
    for name, value in values.items():
        request.requestHeaders.setRawHeaders(name, value if isinstance(value, list) else [value])
    return request_head(request)


def test_a_plain_upgrade_is_recognised() -> None:
    assert plain_key(_request()) == KEY
    assert plain_key(_request(uri=b"/ws?x=1", connection=b"keep-alive, upgrade")) == KEY
    assert plain_key(_request(host=b"[::1]")) == KEY


@pytest.mark.parametrize("request_", [
    _request(method=b"HEAD"),
    _request(uri=b"/ws#fragment"),
    _request(uri=b"//host/ws"),
    _request(host=b"gw.example:http"),
    _request(host=[b"a", b"b"]),
    _request(origin=b"http://gw.example:3000"),
    _request(sec_websocket_protocol=b"chat"),
    _request(sec_websocket_version=b"8"),
    _request(content_length=b"5"),
    _request(content_type=b"text/plain"),
    _request(user_agent=b"split\x85host: x"),
    _request(sec_websocket_extensions=[b"a", b"b"]),
], ids=["method", "fragment", "authority", "port", "two hosts", "origin", "sub-protocol", "version 8", "body", "content type",
        "line break to Autobahn", "two extension headers"])
def test_anything_else_is_left_to_autobahns_handshake(request_: Head) -> None:
    assert plain_key(request_) is None


HEAD = request_bytes(3000, {b"User-Agent": b"x", b"X-Twice": [b"a", b"b"]}).replace(b"Host: 127.0.0.1:3000",
                                                                                       b"Host: gw.example:3000")


def test_a_first_read_holding_one_upgrade_head_is_read_as_twisted_web_reads_it() -> None:
    head = upgrade_head(HEAD.replace(b"GET /ws ", b"GET /ws?x=1 "))
    assert head == _request(uri=b"/ws?x=1", user_agent=b"x", x_twice=[b"a", b"b"])
    assert head is not None and head.path == b"/ws" and plain_key(head) == KEY


@pytest.mark.parametrize("data", [
    HEAD[:-2],  # the head is not complete
    HEAD + b"\x81",  # a frame began in the same read
    HEAD.replace(b"HTTP/1.1", b"HTTP/1.0"),
    HEAD.replace(b"Connection: Upgrade", b"Connection: keep-alive"),  # no upgrade asked for
    HEAD.replace(b"Upgrade: websocket\r\n", b""),
    HEAD.replace(b"User-Agent: x", b"User Agent: x"),  # malformed
    HEAD.replace(b"User-Agent: x", b"User-Agent: x\r\n folded"),  # obsolete line folding
    HEAD.replace(b"\r\n\r\n", b"\r\nX-Pad: " + b"p" * MAX_HEAD + b"\r\n\r\n"),
    b"\r\n\r\n",
], ids=["incomplete", "more after it", "HTTP/1.0", "no upgrade", "no upgrade header", "malformed",
        "folded", "too long", "empty"])
def test_any_other_first_read_is_left_to_twisted_web(data: bytes) -> None:
    assert upgrade_head(data) is None


def _answer_in_pieces(served: Served, request: bytes) -> tuple[bytes, bytes]:
    """The answer when the head arrives in two reads (so twisted.web reads it),
    and the first frame after a register sent on the upgraded connection."""
    plain = rawhttp.open_socket(served.gateway.port)
    with (served.tls.wrap_socket(plain, server_hostname="localhost") if served.tls else plain) as sock:
        sock.settimeout(5)
        sock.sendall(request[:20])
        with pytest.raises(socket.timeout):  # nothing is answered to half a head
            sock.settimeout(0.3)
            sock.recv(1)
        sock.settimeout(5)
        sock.sendall(request[20:])
        data = b""
        while b"\r\n\r\n" not in data and len(data) < 4096:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        send_text_frame(sock, {"type": "register", "payload": {"name": "in-pieces"}})
        frame = sock.recv(4096)
        return data, frame


def test_a_head_in_pieces_gets_the_same_101_and_works(served: Served) -> None:
    from autobahn import __version__

    for changes in ({}, {b"Sec-WebSocket-Extensions": b"permessage-deflate; client_max_window_bits"}):
        data, frame = _answer_in_pieces(served, request_bytes(served.gateway.port, changes))
        assert data == SWITCHING % __version__.encode(), data
        assert frame[:1] == b"\x81" and b'"type":"ack"' in frame, frame
    bystander = served.node("bystander")
    try:
        assert_usable(bystander)
    finally:
        bystander.close()
