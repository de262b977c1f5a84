"""The JavaScript client (wingman.js under Node 20) given a cluster's gateways:
it joins the least loaded one that answers (a gateway that does not answer
its /health is tried last), and when its gateway is killed (-9) it moves to
the least loaded of the others, registers again, rejoins its room and goes on
receiving a stream sent through a third gateway. Real redis-server, three
gateway processes; over WebSocket (Debian's ``ws``) and over the HTTP bridge."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from harness.clusterkit import (
    RedisServer,
    cluster_stats,
    kill_hard,
    presence_events,
    running_cluster,
)
from harness.browserkit import FileServer, chromium
from harness.jsnode import CLIENT, Listener, events
from harness.support import GatewayProcess, Node, free_tcp_port, http_get, running_gateway, wait_until

PAGE = Path(__file__).parent / "harness" / "js" / "page.html"
ROOM = "stream"
ORIGIN = "http://page.example:8000"


def member(gateway: GatewayProcess, name: str, room: str | None = None) -> Node:
    """A registered Python node on ``gateway`` (in ``room`` if given)."""
    node = Node(gateway.url)
    assert node.register(name)["type"] == "ack"
    if room is not None:
        assert node.join(room)["type"] == "ack"
    return node


def room_known(gateway: GatewayProcess, room: str) -> bool:
    return any(group["name"] == room for group in cluster_stats(gateway)["groups"]["groups"])


def said(node: Node, n: int) -> None:
    """Broadcast ``{"n": n}`` to the room and wait for the ack."""
    reply = node.request("broadcast", {"groupName": ROOM, "message": {"n": n}})
    assert reply["type"] == "ack", reply


def say(node: Node, n: int) -> None:
    """Broadcast ``{"n": n}`` to the room; the ack is left unread among what follows."""
    node.send({"type": "broadcast", "payload": {"groupName": ROOM, "message": {"n": n}}})


def await_joined(node: Node, node_id: str, timeout: float = 10.0) -> None:
    """Read ``node``'s envelopes until one tells that ``node_id`` joined its room."""
    deadline = time.monotonic() + timeout
    while True:
        envelope = node.recv(max(deadline - time.monotonic(), 0.01))
        if envelope["type"] == "presence" and any(
            event.get("event") == "joined" and event.get("nodeId") == node_id for event in presence_events(envelope)
        ):
            return


@pytest.mark.parametrize("wire", ["ws", "bridge"])
def test_a_javascript_node_joins_the_least_loaded_gateway_and_fails_over(wire: str) -> None:
    redis = RedisServer()
    nowhere = f"ws://127.0.0.1:{free_tcp_port()}/ws"  # nothing listens: its probe fails
    nodes: list[Node] = []
    try:
        with running_cluster(redis.url) as (gw1, gw2, gw3):
            sender = member(gw1, "sender", ROOM)
            nodes.append(sender)
            wait_until(lambda: room_known(gw2, ROOM) and room_known(gw3, ROOM), 5, "the room on every gateway")
            nodes.append(member(gw2, "member", ROOM))
            nodes += [member(gw1, f"load{index}") for index in range(2)]  # gw1: 3 nodes, gw2: 1, gw3: none
            listener = Listener([nowhere, gw1.url, gw2.url, gw3.url], wire, ROOM, requestTimeout=3000)
            try:
                assert listener.chosen == ("websocket" if wire == "ws" else "http")
                first = listener.query("WHERE")
                assert (first["nodeId"], first["url"]) == (listener.node_id, gw3.url)
                assert first["opened"] == ([gw3.url] if wire == "ws" else [])  # the others not even tried
                assert listener.query("MEMBERS") == ["listener", "member", "sender"]
                await_joined(sender, listener.node_id)
                for n in range(10):
                    said(sender, n)
                listener.ask("UNTIL 9", "SAW 9")
                offered = listener.query("WHERE")["since"]  # the room's position, if the gateway numbers it

                kill_hard(gw3)
                for n in range(10, 20):  # said while the listener moves (the presence it causes kept)
                    say(sender, n)
                    time.sleep(0.05)
                listener.ask("STATE reconnected", "STATE reconnected", 30)
                moved = listener.query("WHERE")
                assert moved["url"] == gw2.url  # 1 node, against 3 on gw1 (and gw3 gone)
                assert moved["nodeId"] != first["nodeId"]
                assert moved["opened"] == ([gw3.url, gw2.url] if wire == "ws" else [])
                await_joined(sender, moved["nodeId"])  # gw1 forwards to it from now on
                # (the node lost with gw3 may still be listed: gone within the cluster's 6 s)
                assert set(listener.query("MEMBERS")) == {"listener", "member", "sender"}
                for n in range(100, 110):
                    said(sender, n)
                listener.ask("UNTIL 109", "SAW 109")
                result = listener.result()
                check_failover(result, gw2.url, gw3.url, offered is not None)
            finally:
                listener.stop()
    finally:
        for node in nodes:
            node.close()
        redis.stop()


def check_failover(result: dict[str, Any], now: str, before: str, numbered: bool) -> None:
    """Delivered once each, in order; before and after the move complete; the
    messages said meanwhile complete only where ``recovered`` says so, which
    (or ``gap``) is told when the gateway gave the room's position
    (``numbered``): without one there is nothing to resume from."""
    numbers = [payload["n"] for payload in result["delivered"]]
    assert numbers == sorted(set(numbers)), numbers
    assert numbers[:10] == list(range(10)) and numbers[-10:] == list(range(100, 110)), numbers
    names = [event for event, _ in result["states"]]
    assert names[0] == "disconnected" and names[-1] == "reconnected", names
    [reconnected] = events(result, "reconnected")
    assert reconnected["url"] == now and reconnected["url"] != before
    assert list(reconnected["rooms"]) == [ROOM]
    resumed = events(result, "recovered") + events(result, "gap")
    if not numbered:
        assert resumed == [], result["states"]
        return
    assert len(resumed) == 1 and resumed[0]["room"] == ROOM, result["states"]
    if events(result, "recovered"):
        assert list(range(10, 20)) == [n for n in numbers if 10 <= n < 20]
    else:
        assert resumed[0]["reason"], resumed


def test_a_full_gateway_is_passed_over() -> None:
    """The least loaded gateway refuses the node (MAX_NODES_REACHED): the next one takes it."""
    with running_gateway("--max-nodes", "1") as full, running_gateway() as busy:
        load = [member(full, "load0")] + [member(busy, f"load{index}") for index in (1, 2)]
        try:
            listener = Listener([busy.url, full.url], "ws", ROOM)
            try:
                where = listener.query("WHERE")
                # full ranked first (1 node against 2) though listed second, tried, passed over
                assert where["opened"] == [full.url, busy.url] and where["url"] == busy.url
                listener.result()
            finally:
                listener.stop()
        finally:
            for node in load:
                node.close()


@pytest.mark.parametrize("given", ["[]", "[3000]", "null"])
def test_no_usable_url_list_is_a_clear_error(given: str) -> None:
    code = f"""
        const {{ connect }} = await import({json.dumps(str(CLIENT))});
        try {{ await connect({given}, {{ name: "x" }}); }}
        catch (error) {{ console.log(error.name + ": " + error.message); }}"""
    done = subprocess.run(["node", "--input-type=module", "-e", code], capture_output=True, text=True, timeout=30)
    assert done.stdout.strip() == "TypeError: connect(url) needs a gateway URL or a list of them", done


def test_health_answers_the_pages_that_may_use_the_gateway() -> None:
    """A page from an origin in --cors-origin can read /health (to rank the
    gateways); another origin gets no CORS header, so its page cannot."""
    with running_gateway("--cors-origin", ORIGIN) as gateway:
        for origin, allowed in ((ORIGIN, ORIGIN), ("http://elsewhere.example", None)):
            status, headers, body = http_get(gateway, "/health", headers={"Origin": origin})
            named = {name.lower(): value for name, value in headers.items()}
            assert status == 200 and '"wingman-gateway"' in body
            assert named.get("access-control-allow-origin") == allowed and named["vary"] == "Origin"


def test_a_page_ranks_gateways_that_allow_its_origin(tmp_path: Path) -> None:
    """In Chromium, a page from another origin reads each gateway's /health:
    the empty gateway, listed second, is chosen over the loaded one."""
    pages = FileServer({"/": PAGE, "/scenario.mjs": PAGE.parent / "scenario.mjs"})
    load: list[Node] = []
    try:
        with running_gateway("--cors-origin", pages.origin) as busy, \
                running_gateway("--cors-origin", pages.origin) as idle, \
                chromium(tmp_path / "chromium-profile") as browser:
            load += [member(busy, f"load{index}") for index in range(2)]
            page = browser.new_page()
            page.goto(f"{pages.origin}/?gateway=http://127.0.0.1:{busy.port}")
            page.wait_for_function("window.ready === true")
            assert page.evaluate("(urls) => chosen(urls)", [busy.url, idle.url]) == idle.url
            for node in load:
                node.close()
            load.clear()
            assert page.evaluate("(urls) => chosen(urls)", [busy.url, idle.url]) == busy.url  # a tie: the order given
    finally:
        for node in load:
            node.close()
        pages.stop()
