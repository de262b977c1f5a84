"""Room history in a cluster, kept in Redis: the same offsets on every gateway,
resuming on another gateway, and what a Redis outage does to it.

Real gateways and a real redis-server; nodes are the independent
``websockets`` client (raw envelopes).
"""

from __future__ import annotations

import time
from typing import Any, Iterator

import pytest

from harness.background import stop_all
from harness.clusterkit import (
    RedisServer, collect, expect_no_more, health_of, members_known, placed, relayed_cluster,
    running_cluster, start_member, wait_formed,
)
from harness.support import GatewayProcess, Node, NodePool, wait_until

SIZE = 50
TTL_MS = 4000


@pytest.fixture(scope="module")
def gateways(redis: RedisServer) -> Iterator[list[GatewayProcess]]:
    with running_cluster(redis.url, ("gw1", "gw2", "gw3"), "--rate-limit", "0",
                         "--history-size", str(SIZE), "--history-ttl", str(TTL_MS)) as started:
        yield started




def send_many(node: Node, room: str, tag: str, numbers: range) -> None:
    """Broadcasts sent without waiting for their acks (``messageId`` ``TAG-N``)."""
    for number in numbers:
        node.send({"type": "broadcast", "messageId": f"{tag}-{number}",
                   "payload": {"groupName": room, "message": {"n": number, "from": tag}}})


def join_since(node: Node, room: str, since: dict[str, Any] | None, message_id: str = "j") -> None:
    payload: dict[str, Any] = {"groupName": room, "createIfNotExists": True}
    if since is not None:
        payload["since"] = since
    node.send({"type": "join_group", "messageId": message_id, "payload": payload})


def position(envelope: dict[str, Any]) -> tuple[int, str]:
    return envelope["offset"], envelope["epoch"]


def test_every_gateway_delivers_the_same_offsets_in_the_same_order(
    gateways: list[GatewayProcess], pools: list[NodePool]
) -> None:
    senders = [pools[0]("s1", "same"), pools[1]("s2", "same")]
    receivers = [pools[i % 3](f"r{i}", "same") for i in range(3)]
    members_known(gateways, "same", 5)
    count = 30
    for number in range(count):  # interleaved, from two gateways, nobody waits
        send_many(senders[0], "same", "a", range(number, number + 1))
        send_many(senders[1], "same", "b", range(number, number + 1))
    seen: list[list[tuple[int, str, str, int]]] = []
    for receiver in receivers:
        got = collect(receiver, "broadcast", 2 * count)
        seen.append([(m["offset"], m["epoch"], m["payload"]["from"], m["payload"]["n"]) for m in got])
        expect_no_more(receiver, "broadcast", 0.3)
    assert seen[0] == seen[1] == seen[2]  # one order, everywhere
    offsets = [entry[0] for entry in seen[0]]
    assert offsets == list(range(offsets[0], offsets[0] + 2 * count))
    assert len({entry[1] for entry in seen[0]}) == 1
    for tag in ("a", "b"):
        assert [n for _, _, sender, n in seen[0] if sender == tag] == list(range(count))
    # Each sender's acks carry the offsets the others saw for its messages.
    for sender, tag in zip(senders, ("a", "b")):
        acks = collect(sender, "ack", count)
        assert [a["messageId"] for a in acks] == [f"{tag}-{n}" for n in range(count)]
        assert [a["payload"]["offset"] for a in acks] == [o for o, _, s, _ in seen[0] if s == tag]
        assert all(a["payload"]["recipients"] == 4 for a in acks)
        other = collect(sender, "broadcast", count)
        assert {m["payload"]["from"] for m in other} == {"b" if tag == "a" else "a"}


def test_a_node_resumes_on_another_gateway_while_messages_stream(
    gateways: list[GatewayProcess], pools: list[NodePool]
) -> None:
    speaker = pools[0]("speaker", "stream")
    keeper = pools[2]("keeper", "stream")  # keeps the room while the listener is away
    listener = pools[1]("listener", "stream")
    members_known(gateways, "stream", 3)
    send_many(speaker, "stream", "s", range(0, 4))
    first = collect(listener, "broadcast", 4)
    since = {"offset": first[-1]["offset"], "epoch": first[-1]["epoch"]}
    listener.close()
    send_many(speaker, "stream", "s", range(4, 8))
    collect(keeper, "broadcast", 8)
    backs = []
    for index, gateway in enumerate((2, 0, 1)):  # on every gateway, the speaker's too
        back = pools[gateway](f"back{index}")
        join_since(back, "stream", since)
        backs.append(back)
        send_many(speaker, "stream", "s", range(8 + 10 * index, 18 + 10 * index))  # while it resumes
    for back in backs:
        ack = collect(back, "ack", 1)[0]
        assert ack["payload"]["recovered"] is True, ack["payload"]
        assert ack["payload"]["epoch"] == since["epoch"]
        got = collect(back, "broadcast", 34)
        assert [m["offset"] for m in got] == list(range(since["offset"] + 1, since["offset"] + 35))
        assert [m["payload"]["n"] for m in got] == list(range(4, 38))
    for back in backs:
        expect_no_more(back, "broadcast", 0.3)


def test_unresumable_positions_are_told_why(gateways: list[GatewayProcess], pools: list[NodePool]) -> None:
    speaker = pools[0]("speaker", "bounds")
    members_known(gateways, "bounds", 1)
    send_many(speaker, "bounds", "s", range(SIZE + 3))
    acks = collect(speaker, "ack", SIZE + 3)
    last, epoch = acks[-1]["payload"]["offset"], acks[-1]["payload"]["epoch"]

    def answer(since: dict[str, Any], gateway: int = 1) -> dict[str, Any]:
        node = pools[gateway]("n")
        join_since(node, "bounds", since)
        reply = collect(node, "ack", 1)[0]["payload"]
        if reply.get("recovered"):
            reply["messages"] = [m["offset"] for m in collect(node, "broadcast", last - since["offset"])]
        node.close()
        return reply

    kept = answer({"offset": last - SIZE, "epoch": epoch})
    assert kept["recovered"] is True and kept["messages"] == list(range(last - SIZE + 1, last + 1))
    trimmed = answer({"offset": last - SIZE - 1, "epoch": epoch})
    assert (trimmed["recovered"], trimmed["reason"]) == (False, "too old")
    unknown = answer({"offset": last + 1, "epoch": epoch}, 2)
    assert (unknown["recovered"], unknown["reason"], unknown["offset"]) == (False, "unknown offset", last)
    other = answer({"offset": 1, "epoch": "0123456789abcdef"})
    assert (other["recovered"], other["reason"], other["epoch"]) == (False, "other epoch", epoch)
    # Past --history-ttl nothing is replayed; the epoch stays, so a node that
    # saw everything still resumes with nothing missed.
    time.sleep(TTL_MS / 1000 + 0.3)
    expired = answer({"offset": last - 1, "epoch": epoch})
    assert (expired["recovered"], expired["reason"]) == (False, "too old")
    current = answer({"offset": last, "epoch": epoch}, 2)
    assert current["recovered"] is True and current["messages"] == [] and current["epoch"] == epoch


def test_a_retried_broadcast_is_delivered_once_whichever_gateway_takes_it(
    gateways: list[GatewayProcess], pools: list[NodePool]
) -> None:
    speaker = pools[0]("speaker", "once")
    listener = pools[2]("listener", "once")
    members_known(gateways, "once", 2)
    first = {"type": "broadcast", "idempotencyKey": "k-1", "payload": {"groupName": "once", "message": "hi"}}
    speaker.send({**first, "messageId": "a"})
    speaker.send({**first, "messageId": "b"})  # while the first is under way
    acks = {a["messageId"]: a["payload"] for a in collect(speaker, "ack", 2)}
    assert "duplicate" not in acks["a"] and acks["b"]["duplicate"] is True
    assert acks["b"]["offset"] == acks["a"]["offset"] and acks["b"]["recipients"] == 1
    speaker.close()  # the sender reconnects, to another gateway, and retries
    again = pools[1]("speaker", "once")
    again.send({**first, "messageId": "c"})
    retried = collect(again, "ack", 1)[0]["payload"]
    assert retried["duplicate"] is True
    assert (retried["offset"], retried["epoch"]) == (acks["a"]["offset"], acks["a"]["epoch"])
    assert [m["payload"] for m in collect(listener, "broadcast", 1)] == ["hi"]
    expect_no_more(listener, "broadcast")


def test_the_epoch_outlives_a_gateway_restart(redis: RedisServer) -> None:
    """Redis keeps the room's order: a gateway started again on the same port
    answers the same epoch and resumes from before its restart."""
    args = ("--history-size", "50")
    url = redis.url + "/1"  # a cluster of its own, beside the module's
    gateways = [start_member(url, "r1", *args), start_member(url, "r2", *args)]
    try:
        wait_formed(gateways)
        speaker, listener = placed(gateways, "kept", {"speaker": 1, "listener": 0})
        send_many(speaker, "kept", "s", range(3))
        seen = collect(listener, "broadcast", 3)
        port = gateways[0].port
        gateways[0].stop()
        send_many(speaker, "kept", "s", range(3, 6))
        gateways[0] = start_member(url, "r1", "--listen", f"tcp:{port}:interface=127.0.0.1", *args)
        wait_formed(gateways, 15)
        back = Node(gateways[0].url)
        assert back.register("listener")["type"] == "ack"
        join_since(back, "kept", {"offset": seen[-1]["offset"], "epoch": seen[-1]["epoch"]})
        ack = collect(back, "ack", 1)[0]["payload"]
        assert ack["recovered"] is True and ack["epoch"] == seen[-1]["epoch"], ack
        assert [m["payload"]["n"] for m in collect(back, "broadcast", 3)] == [3, 4, 5]
        for node in (speaker, listener, back):
            node.close()
    finally:
        stop_all(gateways)


def test_history_off_in_a_cluster_numbers_nothing(redis: RedisServer) -> None:
    with running_cluster(redis.url + "/2", ("o1", "o2"), "--history-size", "0") as gateways:
        pools = [NodePool(gateway) for gateway in gateways]
        try:
            speaker, listener = pools[0]("speaker", "plain"), pools[1]("listener", "plain")
            members_known(gateways, "plain", 2)
            ack = speaker.request("broadcast", {"groupName": "plain", "message": 1})["payload"]
            assert ack["recipients"] == 1 and "offset" not in ack and "epoch" not in ack
            got = listener.recv_type("broadcast")
            assert got["payload"] == 1 and "offset" not in got
            join_since(listener, "plain", {"offset": 1, "epoch": "x"})
            reply = collect(listener, "ack", 1)[0]["payload"]
            assert (reply["recovered"], reply["reason"]) == (False, "history off")
        finally:
            for pool in pools:
                pool.close_all()


def test_a_redis_outage_leaves_a_hole_nobody_resumes_across() -> None:
    """Redis stays up, but the gateways lose their path to it (a relay held):
    local members still get everything, unnumbered; a resume across the
    outage is told ``too old``, one during it ``history unavailable``."""
    with relayed_cluster(("h1", "h2"), "--rate-limit", "0") as (relay, gateways):
        alice, alice2, bob = placed(gateways, "ops", {"alice": 0, "alice2": 0, "bob": 1})
        send_many(alice, "ops", "a", range(2))
        before = collect(bob, "broadcast", 2)
        collect(alice2, "broadcast", 2)
        last, epoch = position(before[-1])
        relay.hold()
        wait_until(lambda: health_of(gateways[0])["status"] == "degraded", 10, "the link down")
        send_many(alice, "ops", "a", range(2, 5))
        acks = collect(alice, "ack", 5)[2:]
        assert [(a["payload"]["recipients"], "offset" in a["payload"]) for a in acks] == [(1, False)] * 3
        during = collect(alice2, "broadcast", 3)
        assert [m["payload"]["n"] for m in during] == [2, 3, 4] and all("offset" not in m for m in during)
        late = Node(gateways[0].url)
        assert late.register("late")["type"] == "ack"
        join_since(late, "ops", {"offset": last, "epoch": epoch})
        unavailable = collect(late, "ack", 1)[0]["payload"]
        assert (unavailable["recovered"], unavailable["reason"]) == (False, "history unavailable")
        relay.release()
        wait_formed(gateways, 15)
        send_many(alice, "ops", "a", range(5, 6))
        after = collect(bob, "broadcast", 1)[0]
        assert after["epoch"] == epoch and after["offset"] == last + 2  # last + 1 is the hole
        returning = Node(gateways[1].url)
        assert returning.register("returning")["type"] == "ack"
        join_since(returning, "ops", {"offset": last, "epoch": epoch})
        across = collect(returning, "ack", 1)[0]["payload"]
        assert (across["recovered"], across["reason"]) == (False, "too old")
        join_since(returning, "ops", {"offset": last + 2, "epoch": epoch}, "j2")
        assert collect(returning, "ack", 1)[0]["payload"]["recovered"] is True
        for node in (alice, alice2, bob, late, returning):
            node.close()


def test_frames_read_after_a_resume_are_not_delivered_twice() -> None:
    """A gateway's subscription and its commands are two connections: here the
    subscription's frames come 0.3 s late (a relay slows that connection
    only), so frames published before a join read the history arrive after
    its answer. The resuming node still gets each message once."""
    with relayed_cluster(("l1", "l2"), "--rate-limit", "0", lag_after=b"SUBSCRIBE", lag=0.3) as (_, gateways):
        speaker, keeper, listener = placed(gateways, "slow", {"speaker": 0, "keeper": 1, "listener": 1})
        send_many(speaker, "slow", "s", range(2))
        seen = collect(listener, "broadcast", 2)
        since = {"offset": seen[-1]["offset"], "epoch": seen[-1]["epoch"]}
        listener.close()
        send_many(speaker, "slow", "s", range(2, 20))
        collect(speaker, "ack", 20)  # numbered: their frames are on their slow way to l2
        back = Node(gateways[1].url)
        assert back.register("back")["type"] == "ack"
        join_since(back, "slow", since)
        send_many(speaker, "slow", "s", range(20, 30))
        ack = collect(back, "ack", 1)[0]["payload"]
        assert ack["recovered"] is True, ack
        got = collect(back, "broadcast", 28)
        assert [m["payload"]["n"] for m in got] == list(range(2, 30))
        expect_no_more(back, "broadcast", 0.8)
        for node in (speaker, keeper, back):
            node.close()
