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


REBOUND = "evil.example:3000"  # a page's own name, made to resolve to the gateway


def bridge_register(port: int, origin: str, host: str) -> tuple[int, dict]:
    """A bridge register sent as the page at ``origin`` would, addressed to ``host``."""
    body = b'{"type":"register","messageId":"r","payload":{"name":"page"}}'
    status, _, answer = rawhttp.exchange(port, (
        f"POST /bridge/send HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body)
    return status, json.loads(answer)


def test_a_rebound_name_is_not_the_gateways_own_origin(gateway: GatewayProcess) -> None:
    """Origin and Host agree, but the name is one the gateway does not know: 403 on /ws and /bridge."""
    refusal = ("pages served as 'evil.example' may not use this gateway: it does not know that name, "
               "so the page may belong to another site whose name was made to resolve here "
               "(DNS rebinding); to allow it, start the gateway with --allowed-host evil.example")
    status, body = upgrade(gateway.port, f"http://{REBOUND}".encode(), host=REBOUND)
    assert status == 403
    assert json.loads(body)["payload"] == {"code": "FORBIDDEN", "message": refusal}
    status, answer = bridge_register(gateway.port, f"http://{REBOUND}", REBOUND)
    assert status == 403 and answer["payload"] == {"code": "FORBIDDEN", "message": refusal}
    assert "Traceback" not in gateway.log
    # IP literals and localhost are the gateway's own; programs (no Origin) are unaffected.
    for host in (f"127.0.0.1:{gateway.port}", f"localhost:{gateway.port}", f"[::1]:{gateway.port}"):
        assert upgrade(gateway.port, f"http://{host}".encode(), host=host)[0] == 101
    node = Node(gateway.url)
    try:
        assert node.register("program")["type"] == "ack"
        assert_usable(node)
    finally:
        node.close()


@pytest.mark.parametrize("options", [("--allowed-host", "evil.example"), ("--name", "evil.example"),
                                     ("--auth", "--token", "secret-token")])
def test_a_known_name_or_required_auth_admits_the_page(options: tuple[str, ...]) -> None:
    with running_gateway(*options) as gateway:
        assert upgrade(gateway.port, f"http://{REBOUND}".encode(), host=REBOUND)[0] == 101
        status, answer = bridge_register(gateway.port, f"http://{REBOUND}", REBOUND)
        if "--auth" in options:  # admitted as a page, then held to the token
            assert (status, answer["payload"]["code"]) == (401, "AUTH_FAILED")
        else:
            assert status == 200 and answer["type"] == "ack", answer


def test_allowed_host_settings() -> None:
    from wingman_gateway.checks import ConfigError
    from wingman_gateway.config import build
    from wingman_gateway.web.origin import page_hosts

    config = build({"allowedHosts": ["Gw.Example."]}, {"allowed-host": ["A.example", "b.example"]}, [], False)
    assert config.allowed_hosts == ("a.example", "b.example")  # the flag replaces the file's list
    assert build({"allowedHosts": "Gw.Example."}, {}, [], False).allowed_hosts == ("gw.example",)
    with pytest.raises(ConfigError, match="--allowed-host: expected a host name such as gateway.example, "
                                          "got 'http://evil.example'"):
        build({}, {"allowed-host": ["http://evil.example"]}, [], False)
    hosts = page_hosts(["gw"], ["tcp:3000:interface=box.lan", "unix:/run/gw.sock"], any_host=False)
    assert [hosts.trusts(h) for h in ("gw", "BOX.lan.", "::1", "10.1.2.3", "app.localhost", "evil.example")] == [
        True, True, True, True, True, False]
    assert page_hosts([], [], any_host=True).trusts("evil.example")
