"""Clients with several gateways: the least loaded is chosen, and another takes over when it dies."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Iterator

import pytest
import pytest_twisted

from harness.background import stop_all
from harness.cli_support import LineProcess, converse
from harness.clusterkit import RedisServer, cluster_stats, kill_hard, start_member, wait_formed
from harness.sdkkit import Flavour, Inbox, States
from harness.support import GatewayProcess, Node, wait_until


@pytest.fixture
def cluster() -> Iterator[tuple[RedisServer, list[GatewayProcess]]]:
    redis = RedisServer()
    started: list[GatewayProcess] = []
    try:
        for name in ("gw1", "gw2", "gw3"):
            started.append(start_member(redis.url, name))
        wait_formed(started)
        yield redis, started
    finally:
        stop_all(started + [redis])


def idle_nodes(gateway: GatewayProcess, count: int) -> list[Node]:
    """Registered nodes that only add to a gateway's load."""
    nodes = []
    for index in range(count):
        node = Node(gateway.url)
        assert node.register(f"load{index}")["type"] == "ack"
        nodes.append(node)
    return nodes


async def dead(flavour: Flavour, gateway: GatewayProcess) -> None:
    """kill -9, waited for without blocking the client's loop."""
    os.kill(gateway.pid, signal.SIGKILL)
    for _ in range(200):
        if gateway.proc.poll() is not None:
            return
        await flavour.sleep(0.05)


@pytest_twisted.ensureDeferred
async def test_the_client_library_picks_the_least_loaded_and_fails_over(
    cluster: tuple[RedisServer, list[GatewayProcess]], flavour: Flavour,
) -> None:
    """Both Python clients, given the three gateways as a list."""
    _, (gw1, gw2, gw3) = cluster
    load = idle_nodes(gw1, 2) + idle_nodes(gw2, 1)

    async def scenario() -> None:
        watcher = flavour.client(gw1.url, "watcher")
        client = flavour.client([gw1.url, gw2.url, gw3.url], "mobile")
        await flavour.within(watcher.connect())
        await flavour.within(watcher.join("ops"))
        inbox = Inbox(flavour, watcher)
        states = States(flavour, client)
        first_id = await flavour.within(client.connect())
        assert client.url == gw3.url  # nobody on it yet
        await flavour.within(client.join("ops"))
        joined = await inbox.next("presence", lambda m: m.payload["event"] == "joined")
        assert joined.payload["nodeId"] == first_id
        await dead(flavour, gw3)
        moved = await states.wait_for("reconnected", 15)
        assert moved["url"] == gw2.url  # 1 node, against 3 on gw1
        assert moved["rooms"] == {"ops": joined.payload["groupId"]}
        left = await inbox.next("presence", lambda m: m.payload["event"] == "left", timeout=9)
        assert left.payload["nodeId"] == first_id and left.payload["reason"] == "gateway lost"
        again = await inbox.next("presence", lambda m: m.payload["event"] == "joined", timeout=6)
        assert again.payload["nodeId"] == client.node_id != first_id
        await flavour.until(lambda: len(cluster_stats(gw2)["cluster"]["gateways"]) == 2, 10,
                            "gw2 noticing that gw3 is gone")  # each gateway on its own beat
        assert await flavour.within(client.broadcast("ops", {"after": "failover"})) == 1
        heard = await inbox.next("broadcast")
        assert heard.payload == {"after": "failover"} and heard.from_node_id == client.node_id

    try:
        await flavour.run(scenario)
    finally:
        for node in load:
            node.close()


def test_join_json_fails_over_to_another_gateway(
    cluster: tuple[RedisServer, list[GatewayProcess]], tmp_path: Path
) -> None:
    redis, (gw1, gw2, gw3) = cluster
    ws = Node(gw1.url)
    load = idle_nodes(gw3, 2)
    assert ws.register("ws")["type"] == "ack" and ws.join("ops")["type"] == "ack"
    cli = LineProcess(tmp_path, "gateway", "join", gw1.url, f"127.0.0.1:{gw2.port}", gw3.url,
                      "--json", "--name", "term", "--group", "ops")
    try:
        connected = cli.read_until(lambda r: r.get("event") == "connected" and "room" in r)
        assert connected["url"] == gw2.url and connected["room"] == "ops"
        wait_until(lambda: any(n["name"] == "term" and n["gateway"] == "gw2"
                               for n in cluster_stats(gw1)["nodes"]["nodes"]), 3, "term seen on gw1")
        assert ws.recv_type("presence")["payload"]["name"] == "term"
        converse(cli, ws)
        kill_hard(gw2)
        cli.read_until(lambda r: r.get("event") == "disconnected")
        back = cli.read_until(lambda r: r.get("event") == "reconnected", timeout=15)
        assert back["url"] == gw1.url  # gw3 carries two nodes
        assert list(back["rooms"]) == ["ops"]
        joined = ws.recv_type("presence")
        while joined["payload"]["event"] != "joined":  # first: the old node, lost with its gateway
            assert joined["payload"]["reason"] in ("gateway lost",), joined
            joined = ws.recv_type("presence")
        assert joined["payload"]["nodeId"] == back["nodeId"]
        converse(cli, ws)
        cli.close_stdin()
        assert cli.proc.wait(15) == 0
    finally:
        cli.stop()
        ws.close()
        for node in load:
            node.close()


def test_join_takes_the_gateways_from_the_registry(
    cluster: tuple[RedisServer, list[GatewayProcess]], tmp_path: Path
) -> None:
    redis, (gw1, gw2, gw3) = cluster
    load = idle_nodes(gw1, 1) + idle_nodes(gw3, 1)
    wait_until(lambda: [g["nodes"] for g in cluster_stats(gw2)["cluster"]["gateways"]].count(1) == 2, 3, "load seen")
    cli = LineProcess(tmp_path, "gateway", "join", "--cluster", redis.url, "--json", "--name", "term")
    try:
        assert cli.read_until(lambda r: r.get("event") == "connected")["url"] == gw2.url
        cli.close_stdin()
        assert cli.proc.wait(15) == 0
    finally:
        cli.stop()
        for node in load:
            node.close()
