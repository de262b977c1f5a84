"""Reaching a ``.onion`` gateway: the client hands the name to Tor's SOCKS port.

A SOCKS5 server run by the test on loopback stands in for tor: it records
what was asked for and forwards to a real gateway. That the recorded request
is a host name (address type 3) equal to the ``.onion`` name shows the client
never resolved it itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
import pytest_twisted

from harness.cli_support import LineProcess
from harness.clientkit import Inbox, within
from harness.socks5 import DOMAIN, Request, Socks5Server
from harness.support import GatewayProcess, Node, free_tcp_port
from harness.cli_support import converse
from wingman_gateway.client import ClientError, GatewayClient
from wingman_gateway.client.endpoints import TOR_SOCKS_VARIABLE
from wingman_gateway.onion.keys import OnionKey

ONION = f"{OnionKey.generate().address}.onion"


@pytest.fixture
def socks(gateway: GatewayProcess) -> Iterator[Socks5Server]:
    server = Socks5Server(gateway.port)
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("url", [f"ws://{ONION}/ws", f"http://{ONION}"])
@pytest_twisted.ensureDeferred
async def test_client_library_reaches_an_onion_gateway_through_socks(
    gateway: GatewayProcess, socks: Socks5Server, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv(TOR_SOCKS_VARIABLE, f"tcp:127.0.0.1:{socks.port}")
    alice = GatewayClient(url, "alice", request_timeout=5.0, reconnect=False)
    bob = GatewayClient(gateway.url, "bob", request_timeout=5.0, reconnect=False)
    try:
        await within(alice.connect())
        await within(bob.connect())
        assert socks.requests and set(socks.requests) == {Request(DOMAIN, ONION, 80)}
        await within(alice.join("hidden"))
        await within(bob.join("hidden"))
        alice_inbox, bob_inbox = Inbox(alice), Inbox(bob)
        assert await within(alice.broadcast("hidden", {"via": "tor"})) == 1
        assert (await bob_inbox.next("broadcast")).payload == {"via": "tor"}
        await within(bob.direct(alice.node_id, "back"))
        assert (await alice_inbox.next("direct")).payload == "back"
    finally:
        await within(alice.close())
        await within(bob.close())


def test_join_command_reaches_an_onion_gateway_through_socks(
    gateway: GatewayProcess, socks: Socks5Server, tmp_path: Path
) -> None:
    ws = Node(gateway.url)
    cli = LineProcess(tmp_path, "gateway", "join", f"ws://{ONION}/ws", "--tor-socks",
                      f"tcp:127.0.0.1:{socks.port}", "--json", "--name", "term", "--group", "ops")
    try:
        assert ws.register("ws")["type"] == "ack" and ws.join("ops")["type"] == "ack"
        connected = cli.read_until(lambda r: r.get("event") == "connected" and "room" in r)
        assert connected["room"] == "ops"
        assert socks.requests == [Request(DOMAIN, ONION, 80)]
        ws.recv_type("presence")
        converse(cli, ws)
    finally:
        cli.stop()
        ws.close()


def test_join_says_so_when_the_tor_socks_port_does_not_answer(gateway: GatewayProcess, tmp_path: Path) -> None:
    closed = free_tcp_port()
    cli = LineProcess(tmp_path, "gateway", "join", f"ws://{ONION}/ws", "--tor-socks",
                      f"tcp:127.0.0.1:{closed}", "--json", "--name", "term")
    try:
        assert cli.proc.wait(30) == 1
        assert any(f"wingman: cannot join ws://{ONION}/ws: CONNECTION_FAILED" in line for line in cli.errors), cli.errors
    finally:
        cli.stop()


@pytest_twisted.ensureDeferred
async def test_an_unreachable_onion_name_fails_cleanly(gateway: GatewayProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SOCKS server refuses the connection (as tor does for a service it cannot reach)."""
    server = Socks5Server(free_tcp_port())  # forwards to a port nobody listens on
    monkeypatch.setenv(TOR_SOCKS_VARIABLE, f"tcp:127.0.0.1:{server.port}")
    client = GatewayClient(f"ws://{ONION}/ws", "alice", request_timeout=5.0, reconnect=False)
    try:
        with pytest.raises(ClientError) as raised:
            await within(client.connect())
        assert raised.value.code == "CONNECTION_FAILED"
        assert server.requests == [Request(DOMAIN, ONION, 80)]
    finally:
        await within(client.close())
        server.stop()
