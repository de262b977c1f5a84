"""The client library (``wingman_gateway.client``) against the real gateway process."""

from __future__ import annotations

import os
import signal
from typing import Any, AsyncIterator, Callable

import pytest
import pytest_twisted
from twisted.internet import defer

from harness.clientkit import Inbox, StateLog, sleep, stop_gateway, within
from harness.support import GatewayProcess, Node, free_tcp_port, recv_text, running_gateway, start_gateway
from wingman_gateway.client import ClientError, GatewayClient, Message

MakeClient = Callable[..., GatewayClient]


@pytest_twisted.async_yield_fixture
async def new_client() -> AsyncIterator[MakeClient]:
    """Makes clients (fast reconnects, short timeouts) and closes every one afterwards."""
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


async def pair(new_client: MakeClient, url: str, room: str) -> tuple[GatewayClient, GatewayClient]:
    """Two connected clients, alice and bob, both in ``room``."""
    alice = new_client(url, "alice", capabilities=["chat"])
    bob = new_client(url, "bob", agent_name="reviewer", metadata={"model": "m"})
    await within(alice.connect())
    await within(bob.connect())
    await within(alice.join(room, description="a test room"))
    await within(bob.join(room))
    return alice, bob


async def next_from(stream: AsyncIterator[Message], kind: str, timeout: float = 5.0) -> Message:
    """The next message of ``kind`` from an ``async for`` stream, skipping others (bounded)."""
    for _ in range(100):
        message = await within(stream.__anext__(), timeout)
        if message.type == kind:
            return message
    raise AssertionError(f"no {kind} among 100 messages")


@pytest_twisted.ensureDeferred
async def test_broadcast_and_direct_reach_listener_and_iterator(
    gateway: GatewayProcess, new_client: MakeClient
) -> None:
    alice, bob = await pair(new_client, gateway.url, "alpha")
    assert alice.connected and bob.connected
    assert alice.node_id and bob.node_id and alice.node_id != bob.node_id
    assert set(alice.rooms) == {"alpha"} and alice.rooms == bob.rooms
    bob_inbox = Inbox(bob)
    bob_stream = aiter(bob)
    alice_stream = aiter(alice)

    story = {"type": "agent-stream", "delta": "héllo", "n": [1, 2.5, None, True]}
    recipients = await within(alice.broadcast("alpha", story))
    assert recipients == 1

    heard = await bob_inbox.next("broadcast")
    assert heard.payload == story
    assert heard.from_node_id == alice.node_id and heard.from_name == "alice"
    assert heard.group_id == alice.rooms["alpha"] and heard.group_name == "alpha"
    assert isinstance(heard.timestamp, int)
    assert heard.envelope["type"] == "broadcast" and heard.envelope["payload"] == story
    streamed = await next_from(bob_stream, "broadcast")
    assert streamed == heard

    await within(bob.direct(alice.node_id, "just for you"))
    private = await next_from(alice_stream, "direct")
    assert private.payload == "just for you"
    assert private.from_node_id == bob.node_id and private.from_name == "bob"
    assert private.envelope["targetNodeId"] == alice.node_id
    assert private.group_id is None

    # Order is kept per sender, and the sender never hears itself.
    for number in range(5):
        await within(alice.broadcast("alpha", {"seq": number}))
    got = [(await next_from(bob_stream, "broadcast")).payload["seq"] for _ in range(5)]
    assert got == list(range(5))
    await sleep(0.2)
    assert [m for m in Inbox(alice).messages if m.type == "broadcast"] == []


@pytest_twisted.ensureDeferred
async def test_payloads_are_sent_as_compact_json(gateway: GatewayProcess, new_client: MakeClient) -> None:
    """The gateway forwards the sender's text untouched: an independent client sees it raw."""
    alice = new_client(gateway.url, "alice")
    await within(alice.connect())
    await within(alice.join("compact"))
    observer = Node(gateway.url)
    try:
        assert observer.register("observer")["type"] == "ack"
        assert observer.join("compact")["type"] == "ack"
        assert await within(alice.broadcast("compact", {"a": [1, 2], "b": {"c": "d é"}})) == 1
        raw = recv_text(observer, skip=("ping", "presence"))
        assert '"payload":{"a":[1,2],"b":{"c":"d \\u00e9"}}' in str(raw), raw
        with pytest.raises(ValueError):
            await within(alice.broadcast("compact", float("nan")))
    finally:
        observer.close()


@pytest_twisted.ensureDeferred
async def test_gateway_errors_carry_their_codes(gateway: GatewayProcess, new_client: MakeClient) -> None:
    alice = new_client(gateway.url, "alice")
    bob = new_client(gateway.url, "bob")
    await within(alice.connect())
    await within(bob.connect())
    await within(bob.join("beta"))

    with pytest.raises(ClientError) as refused:
        await within(alice.broadcast("beta", "hi"))
    assert refused.value.code == "NOT_A_MEMBER"
    assert "beta" in refused.value.message

    with pytest.raises(ClientError) as refused:
        await within(alice.leave("nowhere"))
    assert refused.value.code == "GROUP_NOT_FOUND"

    with pytest.raises(ClientError) as refused:
        await within(alice.direct("0123456789abcdef", "anyone?"))
    assert refused.value.code == "NODE_NOT_FOUND"

    with pytest.raises(ClientError) as refused:
        await within(alice.join("gamma", create=False))
    assert refused.value.code == "GROUP_NOT_FOUND"
    assert alice.rooms == {}

    with pytest.raises(ClientError) as refused:
        await within(alice.who("beta"))
    assert refused.value.code == "NOT_A_MEMBER"

    # The connection stays usable after errors.
    ack = await within(alice.join("beta", create=False))
    assert ack["created"] is False and ack["action"] == "join_group"
    members = await within(alice.who("beta"))
    assert {m["name"] for m in members} == {"alice", "bob"}
    assert await within(alice.broadcast("beta", "now I can")) == 1
    left = await within(alice.leave("beta"))
    assert left["groupName"] == "beta" and alice.rooms == {}


@pytest_twisted.ensureDeferred
async def test_wrong_token_is_auth_failed_and_not_retried(new_client: MakeClient) -> None:
    with running_gateway("--auth", "--token", "S3cret-token") as gateway:
        intruder = new_client(gateway.url, "mallory", token="wrong")
        states = StateLog(intruder)
        with pytest.raises(ClientError) as refused:
            await within(intruder.connect())
        assert refused.value.code == "AUTH_FAILED"
        assert "S3cret-token" not in refused.value.message
        assert not intruder.connected and intruder.node_id is None
        await sleep(0.5)  # several backoff periods: no retry may start
        assert states.names == []
        with pytest.raises(ClientError) as refused:
            await within(intruder.ping())
        assert refused.value.code == "NOT_CONNECTED"

        member = new_client(gateway.url, "alice", token="S3cret-token")
        assert await within(member.connect()) == member.node_id


@pytest_twisted.ensureDeferred
async def test_refused_first_connect_does_not_reconnect(new_client: MakeClient) -> None:
    client = new_client(f"ws://127.0.0.1:{free_tcp_port()}/ws", "alice")
    states = StateLog(client)
    with pytest.raises(ClientError) as refused:
        await within(client.connect())
    assert refused.value.code == "CONNECTION_FAILED"
    await sleep(0.4)
    assert states.names == [] and not client.connected


@pytest_twisted.ensureDeferred
async def test_ping_measures_round_trip(gateway: GatewayProcess, new_client: MakeClient) -> None:
    client = new_client(gateway.url, "alice")
    with pytest.raises(ClientError) as refused:
        await within(client.ping())
    assert refused.value.code == "NOT_CONNECTED"
    await within(client.connect())
    seconds = await within(client.ping())
    assert 0 <= seconds < 5


@pytest_twisted.ensureDeferred
async def test_request_without_reply_times_out(new_client: MakeClient) -> None:
    """A gateway that stops answering (SIGSTOP, our own process) gives TIMEOUT."""
    with running_gateway() as gateway:
        client = new_client(gateway.url, "alice", request_timeout=0.5)
        await within(client.connect())
        os.kill(gateway.proc.pid, signal.SIGSTOP)
        try:
            with pytest.raises(ClientError) as refused:
                await within(client.ping())
            assert refused.value.code == "TIMEOUT"
            # The kernel still accepts TCP, but nobody answers the handshake.
            late = new_client(gateway.url, "bob", request_timeout=0.5)
            with pytest.raises(ClientError) as refused:
                await within(late.connect())
            assert refused.value.code == "TIMEOUT"
            assert not late.connected
        finally:
            os.kill(gateway.proc.pid, signal.SIGCONT)
        assert await within(client.ping()) < 0.5
        assert client.connected


@pytest_twisted.ensureDeferred
async def test_client_answers_the_gateway_heartbeat(new_client: MakeClient) -> None:
    with running_gateway("--ping-interval", "100", "--ping-timeout", "400") as gateway:
        client = new_client(gateway.url, "alice")
        states = StateLog(client)
        await within(client.connect())
        await within(client.join("quiet"))
        await sleep(1.5)  # well past the timeout, sending nothing ourselves
        assert client.connected and states.names == ["connected"]
        assert await within(client.who("quiet"))


@pytest_twisted.ensureDeferred
async def test_presence_events_arrive_as_messages(gateway: GatewayProcess, new_client: MakeClient) -> None:
    alice = new_client(gateway.url, "alice")
    await within(alice.connect())
    await within(alice.join("lobby"))
    inbox = Inbox(alice)
    bob = new_client(gateway.url, "bob", capabilities=["review"])
    await within(bob.connect())
    await within(bob.join("lobby"))

    joined = await inbox.next("presence")
    assert joined.payload["event"] == "joined"
    assert joined.from_node_id == bob.node_id and joined.from_name == "bob"
    assert joined.group_id == alice.rooms["lobby"] and joined.group_name == "lobby"
    assert joined.payload["capabilities"] == ["review"] and joined.payload["memberCount"] == 2

    await within(bob.leave("lobby"))
    left = await inbox.next("presence")
    assert left.payload["event"] == "left" and left.payload["reason"] == "left"
    assert left.from_node_id == bob.node_id


@pytest_twisted.ensureDeferred
async def test_close_unregisters_and_ends_iteration(gateway: GatewayProcess, new_client: MakeClient) -> None:
    alice, bob = await pair(new_client, gateway.url, "room")
    alice_inbox = Inbox(alice)
    bob_states = StateLog(bob)
    bob_id = bob.node_id
    seen: list[Message] = []

    async def consume() -> str:
        async for message in bob:
            seen.append(message)
        return "ended"

    consumer = defer.ensureDeferred(consume())
    await within(alice.broadcast("room", "before close"))
    await sleep(0.2)
    assert [m.payload for m in seen] == ["before close"]

    await within(bob.close())
    assert await within(consumer, 5) == "ended"
    assert not bob.connected
    left = await alice_inbox.next("presence", where=lambda m: m.payload["event"] == "left")
    assert left.payload["reason"] == "unregistered"
    assert left.from_node_id == bob_id
    assert bob_states.names == ["disconnected"]

    with pytest.raises(ClientError) as refused:
        await within(bob.broadcast("room", "after close"))
    assert refused.value.code == "NOT_CONNECTED"
    with pytest.raises(ClientError):
        await within(bob.connect())
    # A loop started after close() ends at once.
    assert [m async for m in bob] == []
    await within(bob.close())  # idempotent
    await sleep(0.3)
    assert bob_states.names == ["disconnected"]


@pytest_twisted.ensureDeferred
async def test_reconnects_and_rejoins_after_gateway_restart(new_client: MakeClient) -> None:
    port = free_tcp_port()
    args = ["--listen", f"tcp:{port}:interface=127.0.0.1"]
    url = f"ws://127.0.0.1:{port}/ws"
    first = GatewayProcess(args)
    second: GatewayProcess | None = None
    try:
        first.wait_listening()
        alice, bob = await pair(new_client, url, "alpha")
        await within(alice.join("second-room"))
        old = {"alice": alice.node_id, "bob": bob.node_id}
        old_room = alice.rooms["alpha"]
        alice_states, bob_states = StateLog(alice), StateLog(bob)

        await stop_gateway(first)
        await alice_states.wait_for("disconnected")
        await bob_states.wait_for("reconnecting")
        assert not alice.connected and alice.node_id is None
        for request in (alice.broadcast("alpha", "lost"), bob.ping(), alice.join("other")):
            with pytest.raises(ClientError) as refused:
                await within(request)
            assert refused.value.code == "NOT_CONNECTED"

        await sleep(0.5)  # a few failed attempts against the closed port
        second = GatewayProcess(args)
        second.wait_listening()
        back = {}
        for name, client, states in (("alice", alice, alice_states), ("bob", bob, bob_states)):
            details = await states.wait_for("reconnected", timeout=20)
            names = [n for n in states.names if n not in ("reconnecting", "gap")]
            assert names == ["disconnected", "reconnected"], states.names
            # The restarted gateway kept no history: each room reports a gap.
            gaps = [d for n, d in states.events if n == "gap"]
            assert sorted(d["room"] for d in gaps) == sorted(client.rooms)
            assert {d["reason"] for d in gaps} == {"other epoch"}
            assert states.names[1] == "reconnecting"
            attempts = [d for n, d in states.events if n == "reconnecting"]
            assert [d["attempt"] for d in attempts] == list(range(1, len(attempts) + 1))
            assert all(0.1 <= d["delay"] <= 0.5 for d in attempts)
            assert details["nodeId"] == client.node_id != old[name]
            back[name] = details
            assert client.connected
        assert set(back["alice"]["rooms"]) == {"alpha", "second-room"}
        assert set(alice.rooms) == {"alpha", "second-room"} and set(bob.rooms) == {"alpha"}
        assert alice.rooms["alpha"] == bob.rooms["alpha"] != old_room

        alice_inbox, bob_inbox = Inbox(alice), Inbox(bob)
        assert await within(alice.broadcast("alpha", {"after": "restart"})) == 1
        heard = await bob_inbox.next("broadcast")
        assert heard.payload == {"after": "restart"} and heard.from_node_id == alice.node_id
        await within(bob.direct(alice.node_id, "direct works too"))
        assert (await alice_inbox.next("direct")).payload == "direct works too"
        members = await within(bob.who("alpha"))
        assert {m["nodeId"] for m in members} == {alice.node_id, bob.node_id}
    finally:
        await stop_gateway(first)
        if second is not None:
            await stop_gateway(second)


@pytest_twisted.ensureDeferred
async def test_without_reconnect_a_lost_connection_ends_iteration(new_client: MakeClient) -> None:
    gateway = start_gateway()
    try:
        client = new_client(gateway.url, "alice", reconnect=False)
        states = StateLog(client)
        await within(client.connect())
        stream = aiter(client)
        await stop_gateway(gateway)
        with pytest.raises(StopAsyncIteration):
            await within(stream.__anext__(), 5)
        await sleep(0.3)
        assert states.names == ["connected", "disconnected"]
        with pytest.raises(ClientError) as refused:
            await within(client.ping())
        assert refused.value.code == "NOT_CONNECTED"
    finally:
        await stop_gateway(gateway)


def test_websocket_transport_provides_the_transport_interface() -> None:
    from twisted.internet import reactor
    from zope.interface.verify import verifyObject

    from wingman_gateway.client import IClientTransport, ITransportReceiver
    from wingman_gateway.client.core import _Link
    from wingman_gateway.client.choose import transport_for

    link = _Link(GatewayClient("ws://127.0.0.1:1/ws", "alice", reactor=reactor))
    assert verifyObject(ITransportReceiver, link)
    transport = transport_for("ws://127.0.0.1:1/ws", link, reactor=reactor, ca_file=None, timeout=1.0)
    assert verifyObject(IClientTransport, transport)
    with pytest.raises(ClientError) as refused:
        transport_for("ftp://127.0.0.1/ws", link, reactor=reactor, ca_file=None, timeout=1.0)
    assert refused.value.code == "CONNECTION_FAILED"
