"""Faults in a cluster: a gateway killed with -9, Redis stopped and restarted."""

from __future__ import annotations

import time
from typing import Any, Iterator

import pytest

from harness.background import stop_all
from harness.clusterkit import (
    RedisServer, cluster_stats, health_of, kill_hard, presence_events, running_cluster, wait_formed,
)
from harness.streams import Collector, Streamer
from harness.support import GatewayProcess, Node, NodePool, assert_delivers, expect_error, wait_until

# What the README promises: a dead gateway is gone within TTL + beat (6 s).
DEAD_AFTER = 6.0
SLACK = 1.0


@pytest.fixture
def redis() -> Iterator[list[RedisServer]]:
    servers = [RedisServer()]
    try:
        yield servers
    finally:
        stop_all(servers)


@pytest.fixture
def gateways(redis: list[RedisServer]) -> Iterator[list[GatewayProcess]]:
    with running_cluster(redis[0].url) as started:
        yield started




def next_presence(node: Node, timeout: float) -> list[dict[str, Any]]:
    """The events of the next presence notice (a batch holds several)."""
    deadline = time.monotonic() + timeout
    while True:
        message = node.recv(max(deadline - time.monotonic(), 0.01))
        if message["type"] == "presence":
            return presence_events(message)
        assert message["type"] == "ping", message


def test_a_killed_gateway_is_noticed_within_the_bound(
    gateways: list[GatewayProcess], pools: list[NodePool]
) -> None:
    alice = pools[0]("alice", "ops")
    bob = pools[1]("bob", "ops")
    doomed = [pools[2](f"d{i}", "ops") for i in range(3)]
    members = {alice.node_id, bob.node_id} | {n.node_id for n in doomed}
    wait_until(lambda: {n["id"] for n in cluster_stats(gateways[0])["nodes"]["nodes"]} == members, 3, "all known")
    for node in (alice, bob):  # drain the joins
        wait_until(lambda: _drained(node), 3, "presence drained")
    kill_hard(gateways[2])
    killed_at = time.monotonic()
    for survivor in (alice, bob):  # on both surviving gateways
        seen = set()
        while len(seen) < 3:
            for event in next_presence(survivor, DEAD_AFTER + SLACK):
                assert event["event"] == "left" and event["reason"] == "gateway lost", event
                seen.add(event["nodeId"])
        elapsed = time.monotonic() - killed_at
        assert seen == {n.node_id for n in doomed}
        assert elapsed < DEAD_AFTER + SLACK, elapsed
        assert event["memberCount"] == 2
    stats = cluster_stats(gateways[1])
    assert {n["id"] for n in stats["nodes"]["nodes"]} == {alice.node_id, bob.node_id}
    assert sorted(g["name"] for g in health_of(gateways[1])["cluster"]["gateways"]) == ["gw1", "gw2"]
    assert_delivers(alice, bob, "ops")
    assert "gateway gw3 is gone (gateway lost); 3 of its nodes removed" in gateways[0].log


def _drained(node: Node) -> bool:
    try:
        while True:
            node.recv(0.2)
    except TimeoutError:
        return True


def test_redis_outage_keeps_local_routing_and_recovers(
    redis: list[RedisServer], gateways: list[GatewayProcess], pools: list[NodePool]
) -> None:
    streamer = pools[0]("streamer", "ops")
    alice = pools[0]("alice", "ops")  # on the streamer's gateway
    bob = pools[1]("bob", "ops")  # across Redis
    carol = pools[0]("carol")  # asks for a direct message to bob during the outage
    wait_until(lambda: cluster_stats(gateways[0])["groups"]["groups"][0]["memberCount"] == 3, 3, "members known")
    for node in (streamer, alice, bob, carol):
        _drained(node)
    # A sender streams (50 a second, bounded) across the whole outage: Redis
    # stopped and restarted while it sends.
    local, remote = Collector(alice), Collector(bob)
    local.start()
    remote.start()
    stream = Streamer(streamer, "ops", interval=0.02, most=5000, seconds=120)
    stream.start()
    try:
        local.wait_for(20)
        remote.wait_for(20)
        redis[0].stop()

        def degraded() -> dict[str, Any] | None:
            report = health_of(gateways[0])
            return report if report["status"] == "degraded" else None

        report = wait_until(degraded, 5, "/health degraded")
        assert report["cluster"]["state"] == "degraded"
        assert report["cluster"]["reason"].startswith("lost the connection to redis://127.0.0.1:")
        during = stream.sent
        wait_until(lambda: stream.sent >= during + 50, 10, "50 messages sent during the outage")
        refused = carol.request("direct", {"targetNodeId": bob.node_id, "message": "hello?"})
        expect_error(refused, "UNAVAILABLE")
        # What had to cross is counted and logged.
        assert health_of(gateways[0])["cluster"]["notForwarded"] >= 51
        gateways[0].wait_for(r"messages for other gateways are not forwarded")
        gateways[0].wait_for(r"\d+ messages for other gateways were not forwarded \(Redis unreachable\)")
        redis[0] = redis[0].restarted()
        wait_formed(gateways, timeout=15)
        for gateway in gateways:
            wait_until(lambda: cluster_stats(gateway)["nodes"]["totalNodes"] == 4, 5, "state rebuilt")
        # Crossing works again while the stream goes on.
        back = stream.sent
        wait_until(lambda: len([n for n in remote.payloads() if n >= back]) >= 20, 10, "the stream reaching bob again")
    finally:
        sent = stream.stop()
    wait_until(lambda: len(local.payloads()) >= sent, 10, "every message at alice")
    wait_until(lambda: (remote.payloads() or [None])[-1] == sent - 1, 10, "the last message at bob")
    local.stop()
    remote.stop()
    assert stream.refused == []  # every broadcast was accepted, outage or not
    # The local member got every message, in order, with no gap and no duplicate.
    assert local.payloads() == list(range(sent))
    # Across Redis: those sent during the outage are lost (and counted), none twice or out of order.
    crossed = remote.payloads()
    assert crossed == sorted(set(crossed)) and crossed[0] == 0 and crossed[-1] == sent - 1
    assert back > during + 50 and len(crossed) < sent  # the stream went on through the outage
    # Nobody was taken for lost: the outage made no presence churn.
    assert [m for m in local.received + remote.received if m["type"] == "presence"] == []
    assert_delivers(alice, bob, "ops")
    assert streamer.recv_type("broadcast")["fromNodeId"] == alice.node_id
    assert_delivers(bob, alice, "ops")
    ack = bob.request("direct", {"targetNodeId": carol.node_id, "message": "back"})
    assert ack["type"] == "ack", ack
    assert carol.recv_type("direct")["payload"] == "back"
