"""Nothing lost when a node's gateway dies or restarts: both Python client
libraries (Twisted and asyncio) resume from the room's history in Redis,
on another gateway or on the same one started again."""

from __future__ import annotations

import os
import signal
from typing import Iterator

import pytest
import pytest_twisted

from harness.background import stop_all
from harness.clusterkit import RedisServer, cluster_stats, start_member, wait_formed
from harness.sdkkit import FLAVOURS, Flavour, Inbox, States
from harness.support import GatewayProcess

COUNT = 200
ARGS = ("--rate-limit", "0", "--history-size", str(COUNT))


@pytest.fixture(params=sorted(FLAVOURS))
def flavour(request: pytest.FixtureRequest) -> Flavour:
    return FLAVOURS[request.param]()


@pytest.fixture
def cluster() -> Iterator[tuple[RedisServer, list[GatewayProcess]]]:
    redis = RedisServer()
    started: list[GatewayProcess] = []
    try:
        started = [start_member(redis.url, name, *ARGS) for name in ("gw1", "gw2")]
        wait_formed(started)
        yield redis, started
    finally:
        stop_all(started + [redis])


def knows(gateway: GatewayProcess, count: int) -> bool:
    """``gateway`` sees ``count`` members of the room ``stream``."""
    rooms = cluster_stats(gateway)["groups"]["groups"]
    return any(room["name"] == "stream" and room["memberCount"] == count for room in rooms)


@pytest_twisted.ensureDeferred
async def test_a_node_whose_gateway_is_killed_fails_over_and_misses_nothing(
    cluster: tuple[RedisServer, list[GatewayProcess]], flavour: Flavour
) -> None:
    _, (gw1, gw2) = cluster

    async def scenario() -> None:
        speaker = flavour.client(gw2.url, "speaker")
        await flavour.within(speaker.connect())  # gw2 is the busier one now
        listener = flavour.client([gw1.url, gw2.url], "listener")
        inbox, states = Inbox(flavour, listener), States(flavour, listener)
        await flavour.within(listener.connect())
        assert listener.url == gw1.url
        for client in (speaker, listener):
            await flavour.within(client.join("stream"))
        await flavour.until(lambda: knows(gw2, 2), 5, "the listener known on gw2")
        for n in range(COUNT):
            await flavour.within(speaker.broadcast("stream", {"n": n}))
            if n == COUNT // 3:
                os.kill(gw1.pid, signal.SIGKILL)
            if n % 10 == 0:
                await flavour.sleep(0.01)
        recovered = await states.wait_for("recovered")
        assert recovered["room"] == "stream"
        assert listener.url == gw2.url
        got = [(await inbox.next("broadcast", timeout=10)).payload["n"] for _ in range(COUNT)]
        assert got == list(range(COUNT))
        await flavour.sleep(0.3)
        assert inbox.without("presence") == []  # nothing more: no duplicate
        assert "gap" not in states.names

    await flavour.run(scenario)


@pytest_twisted.ensureDeferred
async def test_a_gateway_restarted_under_a_node_loses_it_nothing(
    cluster: tuple[RedisServer, list[GatewayProcess]], flavour: Flavour
) -> None:
    redis, gateways = cluster
    gw1, gw2 = gateways

    async def scenario() -> None:
        speaker = flavour.client(gw2.url, "speaker")
        listener = flavour.client(gw1.url, "listener")
        inbox, states = Inbox(flavour, listener), States(flavour, listener)
        for client in (speaker, listener):
            await flavour.within(client.connect())
            await flavour.within(client.join("stream"))
        await flavour.until(lambda: knows(gw2, 2), 5, "the listener known on gw2")
        epoch = None
        for n in range(COUNT):
            await flavour.within(speaker.broadcast("stream", {"n": n}))
            if n == COUNT // 3:
                port = gw1.port
                gw1.stop()  # stopped normally, then started again on the same port
                gateways[0] = start_member(
                    redis.url, "gw1", "--listen", f"tcp:{port}:interface=127.0.0.1", *ARGS
                )
            if n % 10 == 0:
                await flavour.sleep(0.01)
        recovered = await states.wait_for("recovered")
        assert recovered["room"] == "stream"
        got = []
        for _ in range(COUNT):
            message = await inbox.next("broadcast", timeout=10)
            got.append(message.payload["n"])
            epoch = epoch or message.envelope.get("epoch")
            assert message.envelope.get("epoch") == epoch  # Redis kept the room's epoch
        assert got == list(range(COUNT))
        await flavour.sleep(0.3)
        assert inbox.without("presence") == []
        assert "gap" not in states.names

    await flavour.run(scenario)
