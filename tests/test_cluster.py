"""Three real gateways sharing rooms through a real redis-server.

Nodes (the independent ``websockets`` client) are spread over the
gateways; every behaviour of one gateway must hold across them.
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any, Iterator

import pytest

from harness.clusterkit import (
    RedisServer, cluster_stats, collect, expect_no_more, health_of, presence_events, running_cluster,
)
from harness.support import GatewayProcess, Node, NodePool, expect_error, http_get, reply_to, wait_until


@pytest.fixture(scope="module")
def gateways(redis: RedisServer) -> Iterator[list[GatewayProcess]]:
    with running_cluster(redis.url) as started:
        yield started


@pytest.fixture
def pools(pools: list[NodePool], gateways: list[GatewayProcess]) -> Iterator[list[NodePool]]:
    """conftest's pools; here the cluster is also empty again before the next test."""
    try:
        yield pools
    finally:
        for pool in pools:
            pool.close_all()  # before conftest's, so the wait below can end
        for gateway in gateways:
            wait_until(lambda: cluster_stats(gateway)["nodes"]["totalNodes"] == 0, 10, "no nodes left")


def redis_cli(redis: RedisServer, *args: str) -> str:
    done = subprocess.run(["redis-cli", "-p", str(redis.port), *args], capture_output=True, text=True, timeout=10)
    assert done.returncode == 0, done.stderr
    return done.stdout


def publish_count(redis: RedisServer) -> int:
    for line in redis_cli(redis, "INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_publish:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


def join_soon(node: Node, room: str, within: float = 1.0, **payload: Any) -> dict[str, Any]:
    """Join a room another gateway made; it must be found within ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        reply = node.request("join_group", {"groupName": room, **payload})
        if reply["type"] == "ack" or time.monotonic() > deadline:
            return reply
        time.sleep(0.02)


def presence(node: Node, event: str, who: str, timeout: float = 5.0) -> dict[str, Any]:
    """The next presence event ``event`` about ``who`` (from a single notice or a batch)."""
    deadline = time.monotonic() + timeout
    while True:
        message = node.recv(max(deadline - time.monotonic(), 0.01))
        assert message["type"] in ("ping", "presence"), message
        if message["type"] == "presence":
            for record in presence_events(message):
                if record["event"] == event and record["nodeId"] == who:
                    return {"nodeId": who, "groupId": message["groupId"], "payload": record}


def test_rooms_are_shared_by_name_and_id(pools: list[NodePool]) -> None:
    alice = pools[0]("alice")
    created = alice.join("alpha")["payload"]
    assert created["created"] is True
    bob = pools[1]("bob")
    joined = join_soon(bob, "alpha")
    assert joined["type"] == "ack", joined
    assert joined["payload"]["groupId"] == created["groupId"]
    assert joined["payload"]["created"] is False
    assert {m["name"] for m in joined["payload"]["members"]} == {"alice", "bob"}
    carol = pools[2]("carol")
    wait_until(lambda: carol.request("join_group", {"groupId": created["groupId"]})["type"] == "ack",
               2, "joining by id on the third gateway")
    assert presence(alice, "joined", bob.node_id)["payload"]["memberCount"] >= 2
    joined_carol = presence(alice, "joined", carol.node_id)
    assert joined_carol["payload"]["memberCount"] == 3
    assert presence(bob, "joined", carol.node_id)["groupId"] == created["groupId"]


def test_broadcast_reaches_every_member_once_in_order(pools: list[NodePool]) -> None:
    senders = [pools[0]("s1", "beta"), pools[1]("s2", "beta")]
    receivers = [pools[i % 3](f"r{i}", "beta") for i in range(6)]
    everyone = senders + receivers
    last = receivers[-1]
    for node in everyone[:-1]:
        wait_until(lambda: _sees_member(node, last.node_id), 5, "membership everywhere")
    count = 40
    for number in range(count):
        for index, sender in enumerate(senders):
            sender.send({"type": "broadcast", "messageId": f"{index}-{number}",
                         "payload": {"groupName": "beta", "message": {"n": number, "from": index}}})
    for index, sender in enumerate(senders):
        acks = collect(sender, "ack", count)
        assert [a["payload"]["recipients"] for a in acks] == [len(everyone) - 1] * count
        got = collect(sender, "broadcast", count)  # the other sender's, never its own
        assert [m["payload"]["n"] for m in got] == list(range(count))
        assert {m["payload"]["from"] for m in got} == {1 - index}
    for receiver in receivers:
        got = collect(receiver, "broadcast", 2 * count)
        for index in (0, 1):
            ordered = [m["payload"]["n"] for m in got if m["payload"]["from"] == index]
            assert ordered == list(range(count)), ordered
        expect_no_more(receiver, "broadcast")


def _sees_member(node: Node, node_id: str | None) -> bool:
    node._next_id += 1
    node.send({"type": "join_group", "messageId": f"peek{node._next_id}", "payload": {"groupName": "beta"}})
    reply = reply_to(node, f"peek{node._next_id}")
    return any(m["nodeId"] == node_id for m in reply["payload"]["members"])


def test_direct_reaches_the_gateway_holding_the_target(pools: list[NodePool]) -> None:
    alice = pools[0]("alice")
    carol = pools[2]("carol")
    wait_until(lambda: any(n["id"] == carol.node_id for n in cluster_stats(pools[0].gateway)["nodes"]["nodes"]),
               2, "carol known on gw1")
    ack = alice.request("direct", {"targetNodeId": carol.node_id, "message": {"hi": 1}})
    assert ack["type"] == "ack" and ack["payload"]["delivered"] is True, ack
    got = carol.recv_type("direct")
    assert got["payload"] == {"hi": 1} and got["fromNodeId"] == alice.node_id
    missing = alice.request("direct", {"targetNodeId": "0123456789abcdef", "message": {}})
    expect_error(missing, "NODE_NOT_FOUND", "no node '0123456789abcdef'")


def test_presence_of_leaving_and_disconnecting_crosses_gateways(pools: list[NodePool]) -> None:
    alice = pools[0]("alice", "gamma")
    bob = pools[1]("bob")
    assert join_soon(bob, "gamma")["type"] == "ack"
    carol = pools[2]("carol")
    assert join_soon(carol, "gamma")["type"] == "ack"
    presence(alice, "joined", carol.node_id)
    assert bob.request("leave_group", {"groupName": "gamma"})["type"] == "ack"
    left = presence(alice, "left", bob.node_id)
    assert left["payload"]["reason"] == "left" and left["payload"]["memberCount"] == 2
    carol.close()
    gone = presence(alice, "left", carol.node_id)
    assert gone["payload"]["memberCount"] == 1


def test_stats_cluster_scope_lists_every_gateway(pools: list[NodePool]) -> None:
    nodes = [pools[i]("n%d" % i, "delta") for i in range(3)]
    def listed() -> dict[str, Any] | None:
        stats = cluster_stats(pools[1].gateway)
        rooms = stats["groups"]["groups"]
        return stats if len(rooms) == 1 and rooms[0]["memberCount"] == 3 else None

    stats = wait_until(listed, 3, "three members listed")
    where = {n["id"]: n["gateway"] for n in stats["nodes"]["nodes"]}
    assert where == {nodes[i].node_id: f"gw{i + 1}" for i in range(3)}
    rooms = {g["name"]: g for g in stats["groups"]["groups"]}
    assert rooms["delta"]["memberCount"] == 3
    assert rooms["delta"]["gateways"] == {"gw1": 1, "gw2": 1, "gw3": 1}
    # The plain /stats stays this gateway's own; an unknown scope is refused.
    status, _, body = http_get(pools[1].gateway, "/stats")
    assert [n["id"] for n in json.loads(body)["nodes"]["nodes"]] == [nodes[1].node_id]
    status, _, body = http_get(pools[1].gateway, "/stats?scope=galaxy")
    assert status == 400
    assert json.loads(body)["error"]["message"] == "unknown scope 'galaxy' (known: gateway, cluster)"


def test_health_reports_the_cluster(gateways: list[GatewayProcess]) -> None:
    report = health_of(gateways[0])
    assert report["status"] == "healthy"
    cluster = report["cluster"]
    assert cluster["state"] == "ok" and "reason" not in cluster
    assert sorted(g["name"] for g in cluster["gateways"]) == ["gw1", "gw2", "gw3"]
    assert cluster["deadAfterMs"] == 6000
    for entry in cluster["gateways"]:
        assert entry["urls"] == [f"ws://127.0.0.1:{gateways[int(entry['name'][-1]) - 1].port}/ws"]


def test_a_message_crosses_redis_once_per_gateway(
    redis: RedisServer, pools: list[NodePool], gateways: list[GatewayProcess]
) -> None:
    sender = pools[0]("sender", "epsilon")
    listeners = [pools[1](f"l{i}") for i in range(5)]
    for listener in listeners:
        assert join_soon(listener, "epsilon")["type"] == "ack"
    wait_until(lambda: cluster_stats(gateways[0])["groups"]["groups"][0]["memberCount"] == 6, 3, "members known")
    before = publish_count(redis)
    ack = sender.request("broadcast", {"groupName": "epsilon", "message": "one"})
    assert ack["payload"]["recipients"] == 5
    for listener in listeners:
        assert listener.recv_type("broadcast")["payload"] == "one"
    assert publish_count(redis) - before == 1  # one PUBLISH, by the script, for both gateways
    # Each gateway subscribes to the directory, its own inbox, and the
    # channel of each room it has members of: here gw1 and gw2 follow epsilon's.
    channels = redis_cli(redis, "PUBSUB", "CHANNELS", "wingman:*").split()
    room = f"wingman:0:room:{ack['payload']['groupId']}"
    assert sorted(c.split(":")[2] for c in channels) == ["directory", "inbox", "inbox", "inbox", "room"]
    assert room in channels
    assert redis_cli(redis, "PUBSUB", "NUMSUB", room).split() == [room, "2"]
    # A room on one gateway alone: one frame, to that gateway only.
    lonely = [pools[2]("x", "zeta"), pools[2]("y", "zeta")]
    before = publish_count(redis)
    sent = lonely[0].request("broadcast", {"groupName": "zeta", "message": 1})["payload"]
    assert sent["recipients"] == 1
    assert lonely[1].recv_type("broadcast")["payload"] == 1
    assert publish_count(redis) == before + 1
    zeta = f"wingman:0:room:{sent['groupId']}"
    assert redis_cli(redis, "PUBSUB", "NUMSUB", zeta).split() == [zeta, "1"]
    # The last member here leaves: the gateway stops following the room.
    for node in lonely:
        node.close()
    wait_until(lambda: redis_cli(redis, "PUBSUB", "NUMSUB", zeta).split() == [zeta, "0"], 5, "unsubscribed")

