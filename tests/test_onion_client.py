"""Reaching a ``.onion`` gateway: both Python clients hand the name to Tor's SOCKS port.

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

from harness.cli_support import LineProcess, converse
from harness.sdkkit import Flavour, Inbox, refused
from harness.socks5 import DOMAIN, Request, Socks5Server
from harness.support import GatewayProcess, Node, free_tcp_port
from wingman_gateway.onion.keys import OnionKey
from wingman_gateway.protocol.tor import TOR_SOCKS_VARIABLE

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
    gateway: GatewayProcess, socks: Socks5Server, flavour: Flavour, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    """The ``tor_socks`` option names the SOCKS port (it wins over the variable, here a dead port)."""
    monkeypatch.setenv(TOR_SOCKS_VARIABLE, f"tcp:127.0.0.1:{free_tcp_port()}")

    async def scenario() -> None:
        alice = flavour.client(url, "alice", reconnect=False, tor_socks=f"tcp:127.0.0.1:{socks.port}")
        bob = flavour.client(gateway.url, "bob", reconnect=False)
        await flavour.within(alice.connect())
        await flavour.within(bob.connect())
        assert socks.requests and set(socks.requests) == {Request(DOMAIN, ONION, 80)}
        await flavour.within(alice.join("hidden"))
        await flavour.within(bob.join("hidden"))
        alice_inbox, bob_inbox = Inbox(flavour, alice), Inbox(flavour, bob)
        assert await flavour.within(alice.broadcast("hidden", {"via": "tor"})) == 1
        assert (await bob_inbox.next("broadcast")).payload == {"via": "tor"}
        await flavour.within(bob.direct(alice.node_id, "back"))
        assert (await alice_inbox.next("direct")).payload == "back"

    await flavour.run(scenario)


@pytest_twisted.ensureDeferred
async def test_the_socks_port_defaults_to_the_variable(
    gateway: GatewayProcess, socks: Socks5Server, flavour: Flavour, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOR_SOCKS_VARIABLE, f"tcp:127.0.0.1:{socks.port}")

    async def scenario() -> None:
        alice = flavour.client(f"ws://{ONION}/ws", "alice", reconnect=False)
        await flavour.within(alice.connect())
        assert socks.requests == [Request(DOMAIN, ONION, 80)]

    await flavour.run(scenario)


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
async def test_an_unreachable_onion_name_fails_cleanly(gateway: GatewayProcess, flavour: Flavour) -> None:
    """The SOCKS server refuses the connection (as tor does for a service it cannot reach);
    every attempt (WebSocket, then the bridge) asked for the name, never an address."""
    server = Socks5Server(free_tcp_port())  # forwards to a port nobody listens on

    async def scenario() -> None:
        client = flavour.client(f"ws://{ONION}/ws", "alice", reconnect=False, tor_socks=f"tcp:127.0.0.1:{server.port}")
        error = await refused(flavour, client.connect())
        assert error.code == "CONNECTION_FAILED", error  # the bridge, tried last, says why in words
        assert error.message.startswith(f"cannot reach http://{ONION}: ") and "Failure" not in error.message, error
        assert server.requests and set(server.requests) == {Request(DOMAIN, ONION, 80)}

    try:
        await flavour.run(scenario)
    finally:
        server.stop()


@pytest_twisted.ensureDeferred
async def test_the_asyncio_client_needs_a_tcp_socks_endpoint() -> None:
    """python-socks speaks to TCP SOCKS ports only: another endpoint kind is refused by name."""
    from harness.sdkkit import AsyncioFlavour

    flavour = AsyncioFlavour()

    async def scenario() -> None:
        client = flavour.client(f"ws://{ONION}/ws", "alice", reconnect=False, tor_socks="unix:/run/tor/socks")
        error = await refused(flavour, client.connect())
        assert error.code == "CONNECTION_FAILED"
        assert "Tor's SOCKS port must be a tcp:HOST:PORT endpoint here, not 'unix:/run/tor/socks'" in error.message

    await flavour.run(scenario)
