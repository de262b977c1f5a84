"""Faults in a cluster: a gateway killed with -9, Redis stopped and restarted."""

from __future__ import annotations

import time
from typing import Any, Iterator

import pytest

from harness.background import stop_all
from harness.clusterkit import (
    RedisServer, cluster_stats, health_of, kill_hard, presence_events, running_cluster, wait_formed,
)
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


@pytest.fixture
def pools(gateways: list[GatewayProcess]) -> Iterator[list[NodePool]]:
    made = [NodePool(gateway) for gateway in gateways]
    try:
        yield made
    finally:
        for pool in made:
            pool.close_all()


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


def _pending(node: Node) -> list[dict[str, Any]]:
    """Everything that arrives within a moment."""
    got = []
    for _ in range(1000):
        try:
            got.append(node.recv(0.3))
        except TimeoutError:
            break
    return got


def _drained(node: Node) -> bool:
    try:
        while True:
            node.recv(0.2)
    except TimeoutError:
        return True


def test_redis_outage_keeps_local_routing_and_recovers(
    redis: list[RedisServer], gateways: list[GatewayProcess], pools: list[NodePool]
) -> None:
    alice = pools[0]("alice", "ops")
    alice2 = pools[0]("alice2", "ops")
    bob = pools[1]("bob", "ops")
    wait_until(lambda: cluster_stats(gateways[0])["groups"]["groups"][0]["memberCount"] == 3, 3, "members known")
    for node in (alice, alice2, bob):
        _drained(node)
    assert_delivers(alice, bob, "ops")
    alice2.recv_type("broadcast")
    redis[0].stop()

    def degraded() -> dict[str, Any] | None:
        report = health_of(gateways[0])
        return report if report["status"] == "degraded" else None

    report = wait_until(degraded, 5, "/health degraded")
    assert report["cluster"]["state"] == "degraded"
    assert report["cluster"]["reason"].startswith("lost the connection to redis://127.0.0.1:")
    # Local members still get everything; what had to cross is counted and logged.
    for number in range(20):
        ack = alice.request("broadcast", {"groupName": "ops", "message": number})
        assert ack["payload"]["recipients"] == 1, ack
        assert alice2.recv_type("broadcast")["payload"] == number
    refused = alice.request("direct", {"targetNodeId": bob.node_id, "message": "hello?"})
    expect_error(refused, "UNAVAILABLE")
    assert health_of(gateways[0])["cluster"]["notForwarded"] >= 21
    gateways[0].wait_for(r"messages for other gateways are not forwarded")
    gateways[0].wait_for(r"\d+ messages for other gateways were not forwarded \(Redis unreachable\)")
    redis[0] = redis[0].restarted()
    wait_formed(gateways, timeout=15)
    for gateway in gateways:
        wait_until(lambda: cluster_stats(gateway)["nodes"]["totalNodes"] == 3, 5, "state rebuilt")
    # Nobody was taken for lost: the outage made no presence churn.
    for node in (alice, alice2, bob):
        assert [m for m in _pending(node) if m["type"] == "presence"] == []
    assert_delivers(alice, bob, "ops")
    assert alice2.recv_type("broadcast")["fromNodeId"] == alice.node_id
    assert_delivers(bob, alice2, "ops")
    assert alice.recv_type("broadcast")["fromNodeId"] == bob.node_id
    ack = bob.request("direct", {"targetNodeId": alice.node_id, "message": "back"})
    assert ack["type"] == "ack", ack
    assert alice.recv_type("direct")["payload"] == "back"
