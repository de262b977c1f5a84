"""The server API and the metrics of clustered gateways, with a real redis-server and every member real."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from harness.background import stop_all
from harness.clusterkit import RedisServer, wait_formed
from harness.opskit import OpsGateway, Series, value
from harness.support import Node, NodePool, wait_until

PREFIX = "wingman_gateway_"


def ops_members(home: Path, redis: RedisServer, count: int) -> list[OpsGateway]:
    """``count`` clustered gateways, each with its admin credential and metrics endpoint."""
    started: list[OpsGateway] = []
    try:
        for number in range(1, count + 1):
            directory = home / f"gw{number}"
            directory.mkdir()
            started.append(OpsGateway(
                directory, "--cluster", redis.url, "--name", f"gw{number}", "--ping-timeout", "60000",
            ))
        wait_formed([ops.process for ops in started])
    except BaseException:
        stop_all(started)
        raise
    return started


@pytest.fixture(scope="module")
def cluster(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[OpsGateway]]:
    started = ops_members(tmp_path_factory.mktemp("clusterops"), redis_server, 3)
    try:
        yield started
    finally:
        stop_all(started)


@pytest.fixture
def pools(cluster: list[OpsGateway]) -> Iterator[list[NodePool]]:
    made = [NodePool(ops.process) for ops in cluster]
    try:
        yield made
    finally:
        for pool in made:
            pool.close_all()


def member_count(ops: OpsGateway, room: str) -> int | None:
    reply = ops.api("GET", f"rooms/{room}/members")
    return len(reply.body["members"]) if reply.status == 200 else None


def closed_notice(node: Node) -> dict[str, object]:
    """The ``closed`` presence notice, after any presence that came before it (bounded)."""
    for _ in range(20):
        notice = node.recv_type("presence")
        if notice["payload"].get("event") == "closed":
            return notice
    raise AssertionError("no closed notice")


def test_closing_a_room_closes_it_on_every_gateway(cluster: list[OpsGateway], pools: list[NodePool]) -> None:
    here = [pools[0](f"h{i}", room="sprint") for i in range(2)]
    there = [pools[1](f"t{i}", room="sprint") for i in range(2)]
    for ops in cluster:
        wait_until(lambda: member_count(ops, "sprint") == 4, 5, "every member seen on every gateway")
    reply = cluster[0].api("POST", "rooms/sprint/close", {"reason": "end of sprint"})
    assert reply.status == 200 and reply.body["closed"] and reply.body["members"] == 4, reply
    for node in here + there:
        notice = closed_notice(node)
        assert notice["payload"] == {"event": "closed", "groupId": reply.body["groupId"],
                                     "groupName": "sprint", "memberCount": 0,
                                     "reason": "end of sprint"}
    for ops in cluster:
        wait_until(lambda: member_count(ops, "sprint") is None, 5, "the room gone on every gateway")
        assert all(r["name"] != "sprint" for r in ops.api("GET", "rooms").body["groups"])
    # Nobody was told anyone "left": the room closed. The members stay connected
    # and a new room of that name is a new room, on either gateway.
    assert there[0].join("sprint")["payload"]["created"] is True
    joined = here[0].join("sprint")
    assert joined["type"] == "ack" and {m["name"] for m in joined["payload"]["members"]} <= {"t0", "h0"}
    cluster[0].audited("admin_close", room="sprint", members=4, reason="end of sprint")


def test_closing_is_refused_while_other_gateways_cannot_be_told(tmp_path: Path) -> None:
    redis = RedisServer()
    members = ops_members(tmp_path, redis, 2)
    pools = [NodePool(ops.process) for ops in members]
    try:
        pools[0]("a", room="kept")
        pools[1]("b", room="kept")
        wait_until(lambda: member_count(members[0], "kept") == 2, 5, "both members seen")
        redis.stop()
        wait_until(lambda: scrape_state(members[0]) == "disconnected", 10, "the link down")
        reply = members[0].api("POST", "rooms/kept/close", {})
        assert reply.status == 503 and reply.body["error"]["code"] == "UNAVAILABLE", reply
        assert "cannot be reached now" in reply.body["error"]["message"]
        assert member_count(members[0], "kept") == 2
    finally:
        for pool in pools:
            pool.close_all()
        stop_all(members)
        redis.stop()


def scrape_state(ops: OpsGateway) -> str:
    series = ops.scrape()
    states = [labels for (name, labels), v in series.items() if name == PREFIX + "backplane_state" and v == 1]
    assert len(states) == 1, states
    return dict(states[0])["state"]


def counted(series: Series, name: str, **labels: str) -> float:
    return value(series, PREFIX + name, **labels)


def test_metrics_follow_the_backplane(tmp_path: Path) -> None:
    redis = RedisServer()
    members = ops_members(tmp_path, redis, 2)
    pools = [NodePool(ops.process) for ops in members]
    try:
        for ops in members:
            assert scrape_state(ops) == "connected"
        sender = pools[0]("sender", room="traffic")
        receiver = pools[1]("receiver", room="traffic")
        wait_until(lambda: member_count(members[0], "traffic") == 2, 5, "the receiver seen")
        before = [ops.scrape() for ops in members]
        count = 7
        for number in range(count):
            sender.send({"type": "broadcast", "payload": {"groupName": "traffic", "message": {"n": number}}})
        got = []
        for _ in range(count):
            got.append(receiver.recv_type("broadcast")["payload"]["n"])
        assert got == list(range(count))
        after = [ops.scrape() for ops in members]
        # One frame to the other gateway per message; delivered there, per transport.
        assert counted(after[0], "backplane_forwarded_total") - counted(before[0], "backplane_forwarded_total") == count
        assert counted(after[0], "backplane_lost_total") == counted(before[0], "backplane_lost_total")
        delivered = "deliveries_total"
        assert (counted(after[1], delivered, transport="websocket")
                - counted(before[1], delivered, transport="websocket")) == count
        assert (counted(after[0], delivered, transport="websocket")
                - counted(before[0], delivered, transport="websocket")) == 0  # the sender is excluded
        redis.stop()
        for ops in members:
            wait_until(lambda: scrape_state(ops) == "disconnected", 10, "the state to follow the link")
        lost_before = counted(members[0].scrape(), "backplane_lost_total")
        sender.send({"type": "broadcast", "messageId": "lost",
                     "payload": {"groupName": "traffic", "message": {"n": "lost"}}})
        assert sender.recv_type("ack")["payload"]["recipients"] == 0  # the receiver could not be reached
        assert counted(members[0].scrape(), "backplane_lost_total") == lost_before + 1
        redis = redis.restarted()
        for ops in members:
            wait_until(lambda: scrape_state(ops) == "connected", 15, "connected again")
    finally:
        for pool in pools:
            pool.close_all()
        stop_all(members)
        redis.stop()


def test_the_server_api_publishes_in_the_clusters_order(cluster: list[OpsGateway], pools: list[NodePool]) -> None:
    """``/api/publish`` answers once Redis numbered the message: the offset every member sees."""
    listeners = [pools[1]("l1", room="news"), pools[2]("l2", room="news")]
    for ops in cluster:
        wait_until(lambda: member_count(ops, "news") == 2, 5, "both listeners seen everywhere")
    reply = cluster[0].api("POST", "publish", {"room": "news", "message": {"headline": 1}})
    assert reply.status == 200 and reply.body["recipients"] == 2, reply
    assert isinstance(reply.body["offset"], int) and reply.body["epoch"]
    for listener in listeners:
        got = listener.recv_type("broadcast")
        assert got["payload"] == {"headline": 1} and got["fromNodeId"] is None
        assert (got["offset"], got["epoch"]) == (reply.body["offset"], reply.body["epoch"])
    both = cluster[1].api("POST", "broadcast", {"rooms": ["news"], "message": 2})
    assert both.status == 200 and both.body["recipients"] == 2
    assert both.body["rooms"][0]["offset"] == reply.body["offset"] + 1
    missing = cluster[2].api("POST", "publish", {"room": "nowhere", "message": 3})
    assert missing.status == 404 and missing.body["error"]["code"] == "GROUP_NOT_FOUND"
