"""``/ws`` follows the bridge's origin policy: programs (no Origin) and the
gateway's own pages are allowed, listed origins too, any other page gets 403."""

from __future__ import annotations

import base64
import json
import os
import ssl
from pathlib import Path

import pytest

from harness import rawhttp
from harness.browserkit import PageServer, chromium
from harness.support import GatewayProcess, Node, assert_usable, make_pki, running_gateway

LISTED = "http://app.example:8080"


pytestmark = pytest.mark.gateway("--cors-origin", LISTED, shared=True)  # one for the module


def upgrade(port: int, origin: bytes | None, host: str | None = None,
            tls: ssl.SSLContext | None = None) -> tuple[int, bytes]:
    """A raw WebSocket upgrade request (over TLS with ``tls``); (status, body) of the answer."""
    key = base64.b64encode(os.urandom(16))
    lines = [
        b"GET /ws HTTP/1.1", b"Host: " + (host or f"127.0.0.1:{port}").encode(),
        b"Upgrade: websocket", b"Connection: Upgrade", b"Sec-WebSocket-Key: " + key,
        b"Sec-WebSocket-Version: 13",
    ]
    if origin is not None:
        lines.append(b"Origin: " + origin)
    plain = rawhttp.open_socket(port)
    with (tls.wrap_socket(plain, server_hostname="localhost") if tls else plain) as sock:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n")
        data = b""
        sock.settimeout(5)
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        status, headers, body = rawhttp.parse_response(data)
        if status != 101 and "content-length" in headers:
            while len(body) < int(headers["content-length"]):
                body += sock.recv(4096)
        return status, body


@pytest.mark.parametrize("origin", [
    None,  # a program, not a page
    LISTED.encode(),  # on --cors-origin
    b"SELF",  # the gateway's own origin, as the client addressed it
])
def test_allowed_upgrades(gateway: GatewayProcess, origin: bytes | None) -> None:
    if origin == b"SELF":
        origin = f"http://127.0.0.1:{gateway.port}".encode()
    assert upgrade(gateway.port, origin)[0] == 101


def test_same_origin_follows_the_host_the_client_addressed(gateway: GatewayProcess) -> None:
    port = gateway.port
    assert upgrade(port, f"http://LocalHost:{port}".encode(), host=f"localhost:{port}")[0] == 101
    # The same page origin, addressed under another name, is another origin.
    assert upgrade(port, f"http://localhost:{port}".encode())[0] == 403
    assert upgrade(port, f"https://127.0.0.1:{port}".encode())[0] == 403


def test_same_origin_over_tls_is_https(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    with running_gateway("--listen", pki.endpoint()) as gateway:
        port, context = gateway.port, pki.client_context()
        host = f"localhost:{port}"
        assert upgrade(port, f"https://localhost:{port}".encode(), host=host, tls=context)[0] == 101
        assert upgrade(port, f"http://localhost:{port}".encode(), host=host, tls=context)[0] == 403


@pytest.mark.parametrize("origin", [b"http://evil.example", b"http://127.0.0.1:1", b"null",
                                    b"http://app.example:8080.evil.example"])
def test_other_pages_are_refused_with_403(gateway: GatewayProcess, origin: bytes) -> None:
    status, body = upgrade(gateway.port, origin)
    assert status == 403
    error = json.loads(body)
    assert error["payload"] == {
        "code": "FORBIDDEN",
        "message": f"origin {origin.decode()!r} is not allowed to use this gateway "
                   "(pages from other origins need --cors-origin)",
    }
    node = Node(gateway.url)  # programs are unaffected
    try:
        assert node.register("program")["type"] == "ack"
        assert_usable(node)
    finally:
        node.close()


PAGE = """<!doctype html><html><body><script>
window.tryJoin = () => new Promise((resolve) => {
  const ws = new WebSocket("ws://127.0.0.1:%(port)d/ws");
  ws.onopen = () => ws.send(JSON.stringify({type: "register", messageId: "r", payload: {name: "page"}}));
  ws.onmessage = (event) => { resolve("answered: " + JSON.parse(event.data).type); ws.close(); };
  ws.onerror = () => resolve("refused");
});
</script></body></html>"""


def test_a_browser_page_from_another_origin_cannot_join(tmp_path: Path) -> None:
    listed, other = PageServer(), PageServer()
    try:
        with running_gateway("--cors-origin", listed.origin) as gateway, chromium(tmp_path / "chromium-profile") as browser:
            for server in (listed, other):
                server.page = (PAGE % {"port": gateway.port}).encode()
            page = browser.new_page()
            page.goto(listed.origin + "/")
            assert page.evaluate("tryJoin()") == "answered: ack"
            stranger = browser.new_page()
            stranger.goto(other.origin + "/")
            assert stranger.evaluate("tryJoin()") == "refused"
            gateway.wait_for(r'"GET /ws HTTP/1.1" 403 ')
    finally:
        listed.stop()
        other.stop()
