"""The same behaviour from both Python clients, the Twisted ``GatewayClient``
and the asyncio ``Node`` (one protocol core), against the real gateway:
register, rooms, broadcast, direct, errors, the heartbeat, agent streams,
reconnect and rejoin after a restart, TLS with a test CA, and the HTTP
bridge behind a proxy that refuses WebSocket upgrades."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Iterator

import pytest
import pytest_twisted

from harness.bridgekit import ProxyProcess
from harness.sdkkit import Flavour, Inbox, States, refused
from harness.support import (
    LOCAL_NAMES,
    WRONG_NAMES,
    GatewayProcess,
    free_tcp_port,
    http_get,
    make_pki,
    running_gateway,
)
from wingman_gateway.agentstream import answer
from wingman_gateway.protocol import NodeCore


async def pair(flavour: Flavour, url: str, room: str, **options: object) -> tuple[NodeCore, NodeCore]:
    alice = flavour.client(url, "alice", capabilities=["chat"], **options)
    bob = flavour.client(url, "bob", agent_name="reviewer", **options)
    await flavour.within(alice.connect())
    await flavour.within(bob.connect())
    await flavour.within(alice.join(room, description="a test room"))
    await flavour.within(bob.join(room))
    return alice, bob


async def exchange(flavour: Flavour, alice: NodeCore, bob: NodeCore, room: str) -> None:
    """A broadcast each way and a direct arrive, with their routing fields."""
    alice_inbox, bob_inbox = Inbox(flavour, alice), Inbox(flavour, bob)
    story = {"type": "note", "text": "héllo", "n": [1, 2.5, None, True]}
    assert await flavour.within(alice.broadcast(room, story)) == 1
    heard = await bob_inbox.next("broadcast")
    assert heard.payload == story and heard.from_node_id == alice.node_id and heard.from_name == "alice"
    assert heard.group_name == room and heard.group_id == alice.rooms[room]
    assert await flavour.within(bob.broadcast(room, {"from": "bob"})) == 1
    assert (await alice_inbox.next("broadcast")).payload == {"from": "bob"}
    assert bob.node_id is not None
    await flavour.within(alice.direct(bob.node_id, "psst"))
    private = await bob_inbox.next("direct")
    assert private.payload == "psst" and private.from_node_id == alice.node_id and private.group_id is None
    assert alice_inbox.without("presence") == [] and bob_inbox.without("presence") == []


async def stop(flavour: Flavour, gateway: GatewayProcess) -> None:
    """SIGTERM our gateway by pid; the client's loop keeps running while it goes."""
    if gateway.proc.poll() is None:
        os.kill(gateway.proc.pid, signal.SIGTERM)
    await flavour.until(lambda: gateway.proc.poll() is not None, 10, "gateway exit")
    gateway.stop()


def transports(gateway: GatewayProcess) -> dict[str, str]:
    status, _, body = http_get(gateway, "/stats")
    assert status == 200, body
    return {node["name"]: node["transport"] for node in json.loads(body)["nodes"]["nodes"]}


@pytest_twisted.ensureDeferred
async def test_register_rooms_broadcast_direct_and_iteration(gateway: GatewayProcess, flavour: Flavour) -> None:
    async def scenario() -> None:
        alice, bob = await pair(flavour, gateway.url, "alpha")
        assert alice.connected and bob.connected and alice.node_id != bob.node_id
        assert set(alice.rooms) == {"alpha"} and alice.rooms == bob.rooms
        stream = aiter(bob)
        await exchange(flavour, alice, bob, "alpha")
        kinds = []
        for _ in range(10):
            message = await flavour.within(anext(stream), 5)
            kinds.append(message.type)
            if message.type == "direct":
                break
        assert kinds[-1] == "direct" and "broadcast" in kinds
        members = await flavour.within(alice.who("alpha"))
        assert {m["name"] for m in members} == {"alice", "bob"}
        for number in range(5):
            await flavour.within(alice.broadcast("alpha", {"seq": number}))
        got = []
        while len(got) < 5:
            message = await flavour.within(anext(stream), 5)
            if message.type == "broadcast":
                got.append(message.payload["seq"])
        assert got == list(range(5))  # order kept per sender
        inbox = Inbox(flavour, alice)
        await flavour.within(bob.leave("alpha"))
        left = await inbox.next("presence", where=lambda m: m.payload["event"] == "left")
        assert left.from_node_id == bob.node_id and left.payload["reason"] == "left"
        assert bob.rooms == {}
        await flavour.within(bob.close())
        assert [m async for m in bob] == []  # iteration after close ends at once
        assert (await refused(flavour, bob.ping())).code == "NOT_CONNECTED"

    await flavour.run(scenario)


@pytest_twisted.ensureDeferred
async def test_gateway_errors_carry_their_codes(gateway: GatewayProcess, flavour: Flavour) -> None:
    async def scenario() -> None:
        alice = flavour.client(gateway.url, "alice")
        bob = flavour.client(gateway.url, "bob")
        await flavour.within(alice.connect())
        await flavour.within(bob.connect())
        await flavour.within(bob.join("beta"))
        error = await refused(flavour, alice.broadcast("beta", "hi"))
        assert error.code == "NOT_A_MEMBER" and "beta" in error.message
        assert (await refused(flavour, alice.leave("nowhere"))).code == "GROUP_NOT_FOUND"
        assert (await refused(flavour, alice.direct("0123456789abcdef", "x"))).code == "NODE_NOT_FOUND"
        assert (await refused(flavour, alice.join("gamma", create=False))).code == "GROUP_NOT_FOUND"
        with pytest.raises(ValueError):
            await flavour.within(alice.broadcast("beta", float("nan")))
        # The connection stays usable after errors.
        ack = await flavour.within(alice.join("beta", create=False))
        assert ack["created"] is False and ack["action"] == "join_group"
        assert await flavour.within(alice.broadcast("beta", "now I can")) == 1

    await flavour.run(scenario)


@pytest_twisted.ensureDeferred
async def test_refusals_before_registering(flavour: Flavour) -> None:
    async def scenario() -> None:
        with running_gateway("--auth", "--token", "S3cret-token") as gateway:
            intruder = flavour.client(gateway.url, "mallory", token="wrong")
            states = States(flavour, intruder)
            error = await refused(flavour, intruder.connect())
            assert error.code == "AUTH_FAILED" and "S3cret-token" not in error.message
            await flavour.sleep(0.4)  # several backoff periods: no retry may start
            assert states.names == [] and not intruder.connected
            member = flavour.client(gateway.url, "alice", token="S3cret-token")
            assert await flavour.within(member.connect()) == member.node_id
        nobody = flavour.client(f"ws://127.0.0.1:{free_tcp_port()}/ws", "alice")
        assert (await refused(flavour, nobody.connect())).code == "CONNECTION_FAILED"
        assert (await refused(flavour, nobody.ping())).code == "NOT_CONNECTED"

    await flavour.run(scenario)


@pytest_twisted.ensureDeferred
async def test_the_heartbeat_is_answered(flavour: Flavour) -> None:
    async def scenario() -> None:
        with running_gateway("--ping-interval", "100", "--ping-timeout", "400") as gateway:
            client = flavour.client(gateway.url, "alice")
            states = States(flavour, client)
            await flavour.within(client.connect())
            await flavour.within(client.join("quiet"))
            await flavour.sleep(1.5)  # well past the timeout, sending nothing ourselves
            assert client.connected and states.names == ["connected"]
            assert await flavour.within(client.who("quiet"))

    await flavour.run(scenario)


@pytest_twisted.ensureDeferred
async def test_agent_stream_answer(gateway: GatewayProcess, flavour: Flavour) -> None:
    """``answer()`` streams one answer; the payloads are those the terminal renders."""

    async def scenario() -> None:
        agent, human = await pair(flavour, gateway.url, "room")
        inbox = Inbox(flavour, human)
        async with answer(agent, "room", prompt="hi?", agent="model") as reply:
            for token in ("Hel", "lo"):
                await reply.send(token)
            async with reply.tool("search", {"q": "x"}) as call:
                call.output = ["found"]
        with pytest.raises(RuntimeError):
            async with answer(agent, "room", prompt="again", agent="model") as reply:
                await reply.send({"event": "on_chat_model_stream", "data": {"chunk": "Th"}})
                raise RuntimeError("model went away")
        kinds = [(await inbox.next("broadcast")).payload for _ in range(9)]
        assert [k["type"] for k in kinds] == [
            "agent-start", "agent-stream", "agent-stream", "tool-start", "tool-end", "agent-complete",
            "agent-start", "agent-stream", "agent-error",
        ]
        start, first, _, tool_start, tool_end, complete = kinds[:6]
        assert start["agent"] == "model" and start["prompt"] == "hi?" and isinstance(start["timestamp"], int)
        assert first["chunk"] == "Hel"
        assert tool_start["toolName"] == "search" and tool_start["toolInput"] == {"q": "x"}
        assert tool_end["toolOutput"] == ["found"]
        assert complete["result"] == {"response": "Hello"}
        assert kinds[7]["chunk"] == {"event": "on_chat_model_stream", "data": {"chunk": "Th"}}
        assert kinds[8]["error"] == "model went away" and "RuntimeError" in kinds[8]["stack"]

    await flavour.run(scenario)


@pytest_twisted.ensureDeferred
async def test_reconnects_and_rejoins_after_the_gateway_restarts(flavour: Flavour) -> None:
    port = free_tcp_port()
    args = ["--listen", f"tcp:{port}:interface=127.0.0.1"]
    url = f"ws://127.0.0.1:{port}/ws"
    started: list[GatewayProcess] = []

    async def scenario() -> None:
        started.append(GatewayProcess(args))
        started[0].wait_listening()
        alice, bob = await pair(flavour, url, "alpha")
        await flavour.within(alice.join("second-room"))
        old_ids, old_room = {alice.node_id, bob.node_id}, alice.rooms["alpha"]
        alice_states, bob_states = States(flavour, alice), States(flavour, bob)

        await stop(flavour, started[0])
        await alice_states.wait_for("disconnected")
        await bob_states.wait_for("reconnecting")
        assert not alice.connected and alice.node_id is None
        assert (await refused(flavour, alice.broadcast("alpha", "lost"))).code == "NOT_CONNECTED"

        await flavour.sleep(0.5)  # a few failed attempts against the closed port
        started.append(GatewayProcess(args))
        started[1].wait_listening()
        for client, states in ((alice, alice_states), (bob, bob_states)):
            details = await states.wait_for("reconnected")
            assert [n for n in states.names if n not in ("reconnecting", "gap")] == ["disconnected", "reconnected"]
            # The restarted gateway kept no history: each room reports a gap.
            gaps = [d for n, d in states.events if n == "gap"]
            assert sorted(d["room"] for d in gaps) == sorted(client.rooms)
            assert {d["reason"] for d in gaps} == {"other epoch"}
            attempts = [d for n, d in states.events if n == "reconnecting"]
            assert [d["attempt"] for d in attempts] == list(range(1, len(attempts) + 1))
            assert all(0.1 <= d["delay"] <= 0.5 for d in attempts)
            assert details["nodeId"] == client.node_id and client.node_id not in old_ids
        assert set(alice.rooms) == {"alpha", "second-room"} and set(bob.rooms) == {"alpha"}
        assert alice.rooms["alpha"] == bob.rooms["alpha"] != old_room
        await exchange(flavour, alice, bob, "alpha")

    try:
        await flavour.run(scenario)
    finally:
        for gateway in started:
            gateway.stop()


@pytest.fixture
def pki_gateway(tmp_path: Path) -> Iterator[tuple[GatewayProcess, Path]]:
    pki = make_pki(tmp_path / "good", LOCAL_NAMES)
    with running_gateway("--listen", pki.endpoint()) as gateway:
        yield gateway, pki.ca


@pytest_twisted.ensureDeferred
async def test_tls_is_verified_with_a_test_ca(
    pki_gateway: tuple[GatewayProcess, Path], tmp_path: Path, flavour: Flavour
) -> None:
    gateway, ca = pki_gateway
    port = gateway.port
    stranger = make_pki(tmp_path / "stranger", LOCAL_NAMES)

    async def scenario() -> None:
        for url in (f"wss://localhost:{port}/ws", f"https://127.0.0.1:{port}"):
            alice = flavour.client(url, "alice", ca_file=str(ca))
            bob = flavour.client(f"wss://127.0.0.1:{port}/ws", "bob", ca_file=str(ca))
            await flavour.within(alice.connect())
            await flavour.within(bob.connect())
            await flavour.within(alice.join("secure"))
            await flavour.within(bob.join("secure"))
            await exchange(flavour, alice, bob, "secure")
            await flavour.within(alice.close())
            await flavour.within(bob.close())
        for url, ca_file in (
            (f"wss://localhost:{port}/ws", None),  # the system store knows no test CA
            (f"wss://localhost:{port}/ws", str(stranger.ca)),
            (f"https://localhost:{port}", str(stranger.ca)),
        ):
            error = await refused(flavour, flavour.client(url, "mallory", ca_file=ca_file).connect())
            assert error.code == "TLS_ERROR", error
            assert "certificate verify failed" in error.message, error.message

    await flavour.run(scenario)


@pytest_twisted.ensureDeferred
async def test_a_certificate_for_another_name_is_refused(tmp_path: Path, flavour: Flavour) -> None:
    wrong = make_pki(tmp_path / "wrong", WRONG_NAMES)

    async def scenario() -> None:
        with running_gateway("--listen", wrong.endpoint()) as gateway:
            for url in (f"wss://127.0.0.1:{gateway.port}/ws", f"wss://localhost:{gateway.port}/ws"):
                client = flavour.client(url, "alice", ca_file=str(wrong.ca), transport="auto")
                error = await refused(flavour, client.connect())
                assert error.code == "TLS_ERROR", error  # never a reason to try HTTP
                assert not client.connected

    await flavour.run(scenario)


@pytest_twisted.ensureDeferred
async def test_bridge_fallback_behind_a_proxy_that_refuses_upgrades(gateway: GatewayProcess, flavour: Flavour) -> None:
    """By default a ws:// URL falls back to the bridge; transport="websocket" does not."""
    proxies = [ProxyProcess(gateway.port), ProxyProcess(gateway.port, block_sse=True)]

    async def scenario() -> None:
        for proxy, reader in zip(proxies, ("sse", "poll")):
            url = f"ws://127.0.0.1:{proxy.port}/ws"
            alice = flavour.client(url, "alice")  # a ws:// URL means transport="auto"
            bob = flavour.client(gateway.url, "bob")
            await flavour.within(alice.connect())
            await flavour.within(bob.connect())
            await flavour.within(alice.join(reader))
            await flavour.within(bob.join(reader))
            await exchange(flavour, alice, bob, reader)
            assert transports(gateway) == {"alice": "http", "bob": "websocket"}
            assert proxy.saw(r"refused GET /ws")
            await flavour.within(alice.close())
            await flavour.within(bob.close())
        assert proxies[0].saw(r"passed GET /bridge/sse")
        assert proxies[1].saw(r"refused GET /bridge/sse") and proxies[1].saw(r"passed GET /bridge/poll")
        plain = flavour.client(f"ws://127.0.0.1:{proxies[0].port}/ws", "carol", transport="websocket")
        assert (await refused(flavour, plain.connect())).code == "CONNECTION_FAILED"

    try:
        await flavour.run(scenario)
    finally:
        for proxy in proxies:
            proxy.stop()


@pytest_twisted.ensureDeferred
async def test_what_came_before_the_first_consumer_is_kept_for_it(flavour: Flavour) -> None:
    """Over the bridge a message can overtake the join's reply: nothing that
    came before the first loop or listener is lost (up to 100 messages)."""
    async def scenario(gateway: GatewayProcess) -> None:
        alice = flavour.client(gateway.url.replace("ws://", "http://"), "alice")
        bob = flavour.client(gateway.url, "bob")
        await flavour.within(alice.connect())
        await flavour.within(bob.connect())
        await flavour.within(alice.join("early"))
        await flavour.within(bob.join("early"))
        for number in range(105):
            await flavour.within(bob.broadcast("early", number))
        await flavour.sleep(0.3)
        stream = aiter(alice)  # the first consumer
        first = [await flavour.within(anext(stream), 5) for _ in range(100)]
        assert first[0].type == "presence" and first[0].payload["name"] == "bob"
        # The oldest are kept, the rest dropped (there was no consumer).
        assert [message.payload for message in first[1:]] == list(range(99))
        later = Inbox(flavour, alice)  # not the first: gets only what comes next
        await flavour.within(bob.broadcast("early", "now"))
        assert (await flavour.within(anext(stream), 5)).payload == "now"
        assert (await later.next("broadcast")).payload == "now" and later.messages == []

    with running_gateway("--rate-limit", "0") as gateway:
        await flavour.run(lambda: scenario(gateway))
