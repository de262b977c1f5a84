"""The client library over the HTTP bridge (``transport="http"``) and with
``transport="auto"``, against the real gateway, through a real proxy that
refuses WebSocket upgrades (and event streams), and over verified HTTPS."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator

import pytest
import pytest_twisted

from harness.bridgekit import ProxyProcess
from harness.clientkit import LOCAL_NAMES, WRONG_NAMES, Inbox, StateLog, make_pki, sleep, stop_gateway, within
from harness.support import GatewayProcess, free_tcp_port, http_get, running_gateway
from wingman_gateway.client import ClientError, GatewayClient

MakeClient = Callable[..., GatewayClient]


@pytest.fixture
def proxies() -> Iterator[Callable[..., ProxyProcess]]:
    started: list[ProxyProcess] = []

    def start(target_port: int, **options: bool) -> ProxyProcess:
        proxy = ProxyProcess(target_port, **options)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


@pytest_twisted.async_yield_fixture
async def new_client() -> AsyncIterator[MakeClient]:
    made: list[GatewayClient] = []

    def make(url: str, name: str, **options: Any) -> GatewayClient:
        options.setdefault("request_timeout", 5.0)
        options.setdefault("min_backoff", 0.1)
        options.setdefault("max_backoff", 0.5)
        client = GatewayClient(url, name, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        await within(client.close(), 15)


def transports(gateway: GatewayProcess) -> dict[str, str]:
    status, _, body = http_get(gateway, "/stats")
    assert status == 200, body
    return {node["name"]: node["transport"] for node in json.loads(body)["nodes"]["nodes"]}


async def exchange(alice: GatewayClient, bob: GatewayClient, room: str) -> None:
    """Both in ``room``; a broadcast each way and a direct arrive."""
    await within(alice.join(room))
    await within(bob.join(room))
    alice_inbox, bob_inbox = Inbox(alice), Inbox(bob)
    assert await within(alice.broadcast(room, {"from": "alice", "n": [1, 2.5, None]})) == 1
    heard = await bob_inbox.next("broadcast")
    assert heard.payload == {"from": "alice", "n": [1, 2.5, None]} and heard.from_node_id == alice.node_id
    assert await within(bob.broadcast(room, {"from": "bob"})) == 1
    heard = await alice_inbox.next("broadcast")
    assert heard.payload == {"from": "bob"} and heard.from_name == "bob" and heard.group_name == room
    await within(bob.direct(alice.node_id, "psst"))
    assert (await alice_inbox.next("direct")).payload == "psst"
    assert alice_inbox.without("presence", "ping") == [] and bob_inbox.without("presence", "ping") == []


@pytest_twisted.ensureDeferred
async def test_http_client_is_a_full_member_next_to_websocket(gateway: GatewayProcess, new_client: MakeClient) -> None:
    alice = new_client(f"http://127.0.0.1:{gateway.port}", "alice", capabilities=["chat"])
    bob = new_client(gateway.url, "bob")
    assert alice.transport is None  # chosen by the URL's scheme
    await within(alice.connect())
    await within(bob.connect())
    assert transports(gateway) == {"alice": "http", "bob": "websocket"}
    stream = aiter(alice)
    await exchange(alice, bob, "alpha")
    members = await within(alice.who("alpha"))
    assert {m["name"] for m in members} == {"alice", "bob"}
    assert await within(alice.ping()) < 5
    # Iteration sees what arrives; presence of a leaving member too.
    bob_inbox = Inbox(bob)
    await within(alice.close())
    left = await bob_inbox.next("presence", where=lambda m: m.payload.get("event") == "left")
    assert left.payload["reason"] == "unregistered"
    remaining = [message async for message in stream]
    assert [m.type for m in remaining if m.type not in ("presence", "ping")] == ["broadcast", "direct"]


@pytest_twisted.ensureDeferred
async def test_auto_uses_websocket_when_the_upgrade_works(gateway: GatewayProcess, new_client: MakeClient) -> None:
    alice = new_client(f"http://127.0.0.1:{gateway.port}", "alice", transport="auto")
    await within(alice.connect())
    assert transports(gateway) == {"alice": "websocket"}


@pytest_twisted.ensureDeferred
async def test_auto_falls_back_to_http_behind_a_proxy_refusing_websocket(
    gateway: GatewayProcess, proxies: Callable[..., ProxyProcess], new_client: MakeClient
) -> None:
    proxy = proxies(gateway.port)
    alice = new_client(f"ws://127.0.0.1:{proxy.port}/ws", "alice", transport="auto")
    bob = new_client(gateway.url, "bob")
    await within(alice.connect())
    await within(bob.connect())
    assert proxy.saw(r"^refused GET /ws$") and proxy.saw(r"^passed GET /bridge/sse$")
    assert transports(gateway) == {"alice": "http", "bob": "websocket"}
    await exchange(alice, bob, "alpha")
    # A plain WebSocket client cannot pass that proxy at all.
    blocked = new_client(f"ws://127.0.0.1:{proxy.port}/ws", "carol", transport="websocket")
    with pytest.raises(ClientError) as refused:
        await within(blocked.connect())
    assert refused.value.code == "CONNECTION_FAILED" and "403" in refused.value.message


@pytest_twisted.ensureDeferred
async def test_http_falls_back_to_long_polling_when_streams_are_blocked(
    gateway: GatewayProcess, proxies: Callable[..., ProxyProcess], new_client: MakeClient
) -> None:
    proxy = proxies(gateway.port, block_sse=True)
    alice = new_client(f"http://127.0.0.1:{proxy.port}", "alice", transport="http")
    bob = new_client(gateway.url, "bob")
    await within(alice.connect())
    await within(bob.connect())
    await exchange(alice, bob, "alpha")
    assert proxy.saw(r"^refused GET /bridge/sse$") and proxy.saw(r"^passed GET /bridge/poll$")
    # Many in a row arrive in order, however the polls batch them.
    inbox = Inbox(alice)
    for n in range(30):
        await within(bob.broadcast("alpha", {"n": n}))
    got = [(await inbox.next("broadcast")).payload["n"] for _ in range(30)]
    assert got == list(range(30))


@pytest_twisted.ensureDeferred
async def test_http_falls_back_to_long_polling_when_a_proxy_holds_streams_back(
    gateway: GatewayProcess, proxies: Callable[..., ProxyProcess], new_client: MakeClient
) -> None:
    proxy = proxies(gateway.port, hold_sse=True)
    alice = new_client(f"http://127.0.0.1:{proxy.port}", "alice", request_timeout=2.0)
    bob = new_client(gateway.url, "bob")
    await within(alice.connect())
    await within(bob.connect())
    await within(alice.join("alpha"))
    await within(bob.join("alpha"))
    inbox = Inbox(alice)
    assert await within(bob.broadcast("alpha", "through the poll")) == 1
    assert (await inbox.next("broadcast", timeout=10)).payload == "through the poll"
    assert proxy.saw(r"^held GET /bridge/sse$") and proxy.saw(r"^passed GET /bridge/poll$")


@pytest_twisted.ensureDeferred
async def test_http_client_reconnects_and_rejoins_after_a_restart(new_client: MakeClient) -> None:
    port = free_tcp_port()
    args = ["--listen", f"tcp:{port}:interface=127.0.0.1"]
    first = GatewayProcess(args)
    second: GatewayProcess | None = None
    try:
        first.wait_listening()
        alice = new_client(f"http://127.0.0.1:{port}", "alice")
        bob = new_client(f"ws://127.0.0.1:{port}/ws", "bob")
        await within(alice.connect())
        await within(bob.connect())
        await within(alice.join("alpha"))
        await within(bob.join("alpha"))
        old_id = alice.node_id
        states = StateLog(alice)
        await stop_gateway(first)
        await states.wait_for("disconnected")
        assert not alice.connected
        await sleep(0.3)
        second = GatewayProcess(args)
        second.wait_listening()
        details = await states.wait_for("reconnected", timeout=20)
        assert details["nodeId"] == alice.node_id != old_id and set(details["rooms"]) == {"alpha"}
        inbox = Inbox(alice)
        for _ in range(200):  # bob (WebSocket) comes back on its own schedule
            if bob.connected and "alpha" in bob.rooms:
                break
            await sleep(0.1)
        assert await within(bob.broadcast("alpha", "after restart")) == 1
        assert (await inbox.next("broadcast")).payload == "after restart"
    finally:
        await stop_gateway(first)
        if second is not None:
            await stop_gateway(second)


@pytest_twisted.ensureDeferred
async def test_https_bridge_verifies_certificates(tmp_path: Path, new_client: MakeClient) -> None:
    good = make_pki(tmp_path / "good", LOCAL_NAMES)
    wrong = make_pki(tmp_path / "wrong", WRONG_NAMES)
    with running_gateway("--listen", good.endpoint()) as gateway:
        url = f"https://127.0.0.1:{gateway.port}"
        alice = new_client(url, "alice", ca_file=str(good.ca))
        bob = new_client(f"wss://localhost:{gateway.port}/ws", "bob", ca_file=str(good.ca))
        await within(alice.connect())
        await within(bob.connect())
        await exchange(alice, bob, "secure")
        for options in ({}, {"ca_file": str(wrong.ca)}):
            stranger = new_client(url, "stranger", reconnect=False, **options)
            with pytest.raises(ClientError) as refused:
                await within(stranger.connect())
            assert refused.value.code == "TLS_ERROR", refused.value
        # auto does not fall back over a TLS failure.
        sneaky = new_client(url, "sneaky", transport="auto")
        with pytest.raises(ClientError) as refused:
            await within(sneaky.connect())
        assert refused.value.code == "TLS_ERROR"
    with running_gateway("--listen", wrong.endpoint()) as gateway:
        misnamed = new_client(f"https://127.0.0.1:{gateway.port}", "m", ca_file=str(wrong.ca))
        with pytest.raises(ClientError) as refused:
            await within(misnamed.connect())
        assert refused.value.code == "TLS_ERROR" and "host name" in refused.value.message


@pytest_twisted.ensureDeferred
async def test_http_connect_failures_are_clear(new_client: MakeClient) -> None:
    nowhere = new_client(f"http://127.0.0.1:{free_tcp_port()}", "alice")
    with pytest.raises(ClientError) as refused:
        await within(nowhere.connect())
    assert refused.value.code == "CONNECTION_FAILED" and "cannot reach" in refused.value.message
    with running_gateway("--no-bridge") as gateway:
        bridgeless = new_client(f"http://127.0.0.1:{gateway.port}", "alice")
        with pytest.raises(ClientError) as refused:
            await within(bridgeless.connect())
        assert refused.value.code == "CONNECTION_FAILED"
        assert refused.value.message.startswith("no HTTP bridge at") and "404" in refused.value.message
        # auto reaches such a gateway over WebSocket.
        await within(new_client(f"http://127.0.0.1:{gateway.port}", "bob", transport="auto").connect())
        assert transports(gateway) == {"bob": "websocket"}


def test_transport_names_are_checked_and_transports_provide_the_interface() -> None:
    from twisted.internet import reactor
    from zope.interface.verify import verifyObject

    from wingman_gateway.client import IClientTransport
    from wingman_gateway.client.core import _Link
    from wingman_gateway.client.choose import transport_for

    with pytest.raises(ValueError, match="transport must be one of websocket, http, auto"):
        GatewayClient("ws://127.0.0.1:1/ws", "alice", transport="carrier-pigeon")
    link = _Link(GatewayClient("ws://127.0.0.1:1/ws", "alice", reactor=reactor))
    for url, kind, name in (
        ("http://127.0.0.1:1", None, "HttpTransport"),
        ("ws://127.0.0.1:1/ws", "http", "HttpTransport"),
        ("https://127.0.0.1:1", "websocket", "WebSocketTransport"),
        ("ws://127.0.0.1:1/ws", "auto", "AutoTransport"),
    ):
        transport = transport_for(url, link, reactor=reactor, ca_file=None, timeout=1.0, kind=kind)
        assert type(transport).__name__ == name and verifyObject(IClientTransport, transport)
    assert transport_for("ws://h:1/ws", link, reactor=reactor, ca_file=None, timeout=1, kind="http").url == "http://h:1"
    assert transport_for("https://h:1", link, reactor=reactor, ca_file=None, timeout=1, kind="websocket").url == "wss://h:1/ws"
    with pytest.raises(ClientError) as refused:
        transport_for("ftp://h/x", link, reactor=reactor, ca_file=None, timeout=1.0, kind="auto")
    assert refused.value.code == "CONNECTION_FAILED"
