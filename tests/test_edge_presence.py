"""Presence in a big room, against a real gateway: nodes joining one after
another (each after the previous one's ack) do not cost a notice per member
per join. Past ``CROWD`` members, a member gets at most one presence
envelope per ``pace(members)``, holding every event, in order."""

from __future__ import annotations

import json
import time

from harness.support import GatewayProcess, NodePool, abort, assert_delivers, assert_usable
from wingman_gateway.presence import CROWD, pace

JOINERS = 2 * CROWD


def test_a_swarm_joining_one_by_one_is_told_in_windows(gateway: GatewayProcess, nodes: NodePool) -> None:
    watcher = nodes("watcher", room="swarm")
    joiners = [nodes(f"node-{n}") for n in range(JOINERS)]
    crowded_at = None
    for n, joiner in enumerate(joiners):
        if n + 2 == CROWD + 1:  # this join makes the room bigger than CROWD
            crowded_at = time.monotonic()
        assert joiner.join("swarm")["type"] == "ack"
    crowded_for = time.monotonic() - crowded_at  # type: ignore[operator]
    # What the watcher was told: every join, once, in order.
    events: list[dict] = []
    envelopes_crowded = 0
    deadline = time.monotonic() + 10
    while len(events) < JOINERS:
        message = json.loads(watcher.ws.recv(max(deadline - time.monotonic(), 0.01)))
        if message["type"] != "presence":
            continue
        payload = message["payload"]
        told = payload["events"] if payload["event"] == "batch" else [payload]
        events.extend(told)
        envelopes_crowded += any(event["memberCount"] > CROWD for event in told)
    assert [event["name"] for event in events] == [f"node-{n}" for n in range(JOINERS)]
    assert [event["memberCount"] for event in events] == list(range(2, JOINERS + 2))
    assert {event["event"] for event in events} == {"joined"}
    # At most one envelope a pace once the room is crowded (plus the one in flight at either end).
    crowded_joins = JOINERS + 1 - CROWD
    assert envelopes_crowded <= crowded_for / pace(CROWD + 1) + 2, (envelopes_crowded, crowded_for)
    assert envelopes_crowded < crowded_joins, (envelopes_crowded, crowded_joins)
    # The room works as before: a message reaches the swarm, after its notices.
    assert_usable(watcher)
    assert_delivers(joiners[0], watcher, "swarm")
    for joiner in joiners:  # they read none of the notices after their own join: no close handshake
        abort(joiner)
