"""Reading from the HTTP bridge of the real gateway process: long polls,
event streams, resuming after a lost response, bounded queues, streams
nobody reads and session expiry."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from typing import Callable

from harness.bridgekit import (
    EventStream,
    Reply,
    bridge_node,
    call,
    error_of,
    flood_until_unread,
    raw_request,
    read_head,
    stalled_stream,
)
from harness.support import (
    GatewayProcess,
    Node,
    NodePool,
    expect_error,
    health,
    wait_totals,
    wait_until,
)


# --- long polls -------------------------------------------------------------------------


def test_poll_answers_at_once_when_queued_and_holds_otherwise(gateway: GatewayProcess, pool: NodePool) -> None:
    ws = pool("ws", "alpha")
    alice = bridge_node(gateway, "alice", "alpha")
    alice.drain(kinds=(), timeout=0.2)  # what the join queued
    started = time.monotonic()
    reply = alice.poll(timeout=1)
    held = time.monotonic() - started
    assert reply.status == 200 and reply.body == {"messages": []} and held >= 0.9
    ws.request("broadcast", {"groupId": "alpha", "message": {"n": 1}})
    reply = alice.poll(timeout=20)  # queued: answered at once
    [item] = reply.body["messages"]
    assert item["envelope"]["type"] == "broadcast" and item["envelope"]["payload"] == {"n": 1}
    assert item["envelope"]["fromNodeId"] == ws.node_id and isinstance(item["seq"], int)
    # A held poll is answered by the next message.
    answers: list[Reply] = []
    poller = threading.Thread(target=lambda: answers.append(alice.poll(timeout=20)))
    poller.start()
    time.sleep(0.3)
    ws.request("broadcast", {"groupId": "alpha", "message": {"n": 2}})
    poller.join(15)
    assert not poller.is_alive()
    assert [i["envelope"]["payload"] for i in answers[0].body["messages"]] == [{"n": 2}]
    error_of(alice.poll(timeout=-1), 400, "INVALID_REQUEST", "timeout must be a number of seconds from 0 to 30")
    error_of(call(gateway.port, "GET", "/bridge/poll?after=x", headers=alice.headers()), 400, "INVALID_REQUEST")
    error_of(alice.poll(after=10**6, timeout=0), 400, "INVALID_REQUEST")


def test_a_newer_poll_finishes_the_older_one(gateway: GatewayProcess, pool: NodePool) -> None:
    ws = pool("ws", "alpha")
    alice = bridge_node(gateway, "alice", "alpha")
    older: list[Reply] = []
    thread = threading.Thread(target=lambda: older.append(alice.poll(timeout=20)))
    thread.start()
    time.sleep(0.3)
    newer: list[Reply] = []
    second = threading.Thread(target=lambda: newer.append(alice.poll(timeout=20)))
    second.start()
    thread.join(10)
    assert not thread.is_alive() and older[0].status == 200 and older[0].body == {"messages": []}
    ws.request("broadcast", {"groupId": "alpha", "message": "to the newer"})
    second.join(10)
    assert [i["envelope"]["payload"] for i in newer[0].body["messages"]] == ["to the newer"]


def test_lost_poll_response_is_resumed_with_every_message_exactly_once(gateway: GatewayProcess, pool: NodePool) -> None:
    ws = pool("ws", "alpha")
    alice = bridge_node(gateway, "alice", "alpha")
    for n in range(5):
        ws.request("broadcast", {"groupId": "alpha", "message": {"n": n}})
    wait_until(lambda: alice.poll(after=0, timeout=0).body["messages"], what="queued messages")
    # A poll whose response is lost mid-flight: read a few bytes, drop the connection.
    sock = raw_request(
        gateway.port,
        f"GET /bridge/poll?after=0&timeout=0 HTTP/1.1\r\nHost: x\r\nX-Wingman-Session: {alice.secret}\r\n\r\n",
    )
    assert sock.recv(40).startswith(b"HTTP/1.1 200")
    sock.close()
    for n in range(5, 8):
        ws.request("broadcast", {"groupId": "alpha", "message": {"n": n}})
    # The client resumes from what it had confirmed (nothing): everything, once.
    seen: list[int] = []
    seqs: list[int] = []
    alice.after = 0
    for _ in range(20):
        reply = alice.poll(timeout=0.5)
        items = reply.body["messages"]
        if not items:
            break
        seqs += [i["seq"] for i in items]
        seen += [i["envelope"]["payload"]["n"] for i in items if i["envelope"]["type"] == "broadcast"]
    assert seen == list(range(8))
    assert seqs == sorted(set(seqs))
    # Confirmed messages are gone: asking from the start again gives nothing.
    assert alice.poll(after=0, timeout=0).body == {"messages": []}


def test_a_held_poll_whose_client_leaves_loses_nothing(gateway: GatewayProcess, pool: NodePool) -> None:
    ws = pool("ws", "alpha")
    alice = bridge_node(gateway, "alice", "alpha")
    alice.drain(kinds=(), timeout=0.2)
    sock = raw_request(
        gateway.port,
        f"GET /bridge/poll?after={alice.after}&timeout=20 HTTP/1.1\r\nHost: x\r\n"
        f"X-Wingman-Session: {alice.secret}\r\n\r\n",
    )
    time.sleep(0.3)
    sock.close()  # the held request goes away
    time.sleep(0.3)
    ws.request("broadcast", {"groupId": "alpha", "message": "kept"})
    assert alice.next_of("broadcast")["payload"] == "kept"
    assert "Traceback" not in gateway.log


# --- event streams -------------------------------------------------------------------------


def test_event_stream_numbers_messages_and_sends_heartbeats(launch: Callable[..., GatewayProcess]) -> None:
    gateway = launch("--bridge-heartbeat", "200")
    ws = Node(gateway.url)
    try:
        assert ws.register("ws")["type"] == "ack" and ws.join("alpha")["type"] == "ack"
        alice = bridge_node(gateway, "alice", "alpha")
        stream = alice.stream(after=0)
        try:
            assert stream.status == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            assert stream.headers["cache-control"] == "no-store"
            text = "line one\nline two"
            ws.request("broadcast", {"groupId": "alpha", "message": {"text": text}})
            ws.send({"type": "broadcast", "payload": {"groupId": "alpha", "message": {"raw": [1,
                2]}}})
            events = [stream.next_event(), stream.next_event()]
            assert [int(e["id"]) for e in events] == [1, 2]
            assert [json.loads(e["data"])["payload"] for e in events] == [{"text": text}, {"raw": [1, 2]}]
            wait_until(lambda: _read_comment(stream), 5, "a heartbeat comment")
            assert "wingman bridge stream" in stream.comments
        finally:
            stream.close()
    finally:
        ws.close()


def _read_comment(stream: EventStream) -> bool:
    try:
        stream.next_event(0.3)
    except (TimeoutError, socket.timeout):
        pass
    return "keepalive" in stream.comments


def test_event_stream_resumes_after_last_event_id_exactly_once(gateway: GatewayProcess, pool: NodePool) -> None:
    ws = pool("ws", "alpha")
    alice = bridge_node(gateway, "alice", "alpha")
    stream = alice.stream(after=0)
    for n in range(3):
        ws.request("broadcast", {"groupId": "alpha", "message": {"n": n}})
    got = [json.loads(stream.next_event()["data"])["payload"]["n"] for _ in range(3)]
    last = stream.last_id
    stream.close()  # the stream breaks; more messages come meanwhile
    for n in range(3, 6):
        ws.request("broadcast", {"groupId": "alpha", "message": {"n": n}})
    resumed = alice.stream(**{"Last-Event-ID": str(last)})
    try:
        got += [json.loads(resumed.next_event()["data"])["payload"]["n"] for _ in range(3)]
        assert got == list(range(6))
        # A stream cut mid-event resumes from the last whole event.
        ws.request("broadcast", {"groupId": "alpha", "message": {"n": 6, "pad": "x" * 4000}})
    finally:
        resumed.close()
    sock = raw_request(
        gateway.port,
        f"GET /bridge/sse HTTP/1.1\r\nHost: x\r\nX-Wingman-Session: {alice.secret}\r\n"
        f"Last-Event-ID: {last + 3}\r\n\r\n",
    )
    status, _, _ = read_head(sock)
    assert status == 200
    sock.recv(100)  # part of the event only
    sock.close()
    again = alice.stream(**{"Last-Event-ID": str(last + 3)})
    try:
        event = again.next_event()
        assert json.loads(event["data"])["payload"]["n"] == 6 and int(event["id"]) == last + 4
        # The ack endpoint confirms what a stream delivered.
        assert call(gateway.port, "POST", f"/bridge/ack?after={last + 4}", headers=alice.headers()).status == 204
        assert alice.poll(after=0, timeout=0).body == {"messages": []}
    finally:
        again.close()


# --- bounded queues and expiry -----------------------------------------------------------


def test_queue_overflow_tells_the_node_how_many_were_lost(launch: Callable[..., GatewayProcess]) -> None:
    gateway = launch("--bridge-queue", "5")
    ws = Node(gateway.url)
    try:
        ws.register("ws")
        ws.join("alpha")
        alice = bridge_node(gateway, "alice", "alpha")
        for n in range(12):
            reply = ws.request("broadcast", {"groupId": "alpha", "message": {"n": n}})
            assert reply["type"] == "ack" and reply["payload"]["recipients"] == 1
        first = alice.poll(timeout=0).body["messages"]
        assert [i["envelope"]["payload"]["n"] for i in first] == [0, 1, 2, 3, 4]
        second = alice.poll(timeout=1).body["messages"]
        [notice] = [i["envelope"] for i in second]
        payload = expect_error(notice, "MESSAGES_LOST")
        assert payload["details"] == {"lost": 7, "maxMessages": 5, "maxBytes": 4 * 1024 * 1024}
        assert payload["message"].startswith("7 messages to this node were dropped")
        ws.request("broadcast", {"groupId": "alpha", "message": {"n": 12}})
        assert alice.next_of("broadcast")["payload"] == {"n": 12}
        assert "bridge queue of node" in gateway.log and "is full" in gateway.log
    finally:
        ws.close()


def test_byte_bound_overflow_is_reported_too(launch: Callable[..., GatewayProcess]) -> None:
    gateway = launch("--bridge-queue-bytes", "2048")
    ws = Node(gateway.url)
    try:
        ws.register("ws")
        ws.join("alpha")
        alice = bridge_node(gateway, "alice", "alpha")
        for n in range(5):
            ws.request("broadcast", {"groupId": "alpha", "message": {"n": n, "pad": "p" * 600}})
        # Two fit; the third's loss is reported at once (its notice fits);
        # the next two wait for room, and are reported once it is there.
        first = [i["envelope"] for i in alice.poll(timeout=0).body["messages"]]
        assert [e["type"] for e in first] == ["broadcast", "broadcast", "error"]
        assert first[2]["payload"]["details"]["lost"] == 1
        [second] = [i["envelope"] for i in alice.poll(timeout=1).body["messages"]]
        assert expect_error(second, "MESSAGES_LOST")["details"]["lost"] == 2
    finally:
        ws.close()


def test_a_session_nobody_reads_expires_like_a_disconnect(launch: Callable[..., GatewayProcess]) -> None:
    gateway = launch("--bridge-session-timeout", "1000")
    ws = Node(gateway.url)
    try:
        ws.register("ws")
        ws.join("alpha")
        alice = bridge_node(gateway, "alice", "alpha")
        reader = bridge_node(gateway, "reader", "alpha")
        stream = reader.stream()  # a stream keeps its session alive
        try:
            left = wait_until(
                lambda: next((m for m in [ws.recv_type("presence", 5)] if m["payload"]["event"] == "left"), None),
                10, "alice to leave",
            )
            assert left["payload"]["nodeId"] == alice.node_id
            assert left["payload"]["reason"] == "bridge session timeout"
            error_of(alice.poll(timeout=0), 401, "AUTH_FAILED")
            time.sleep(1.5)
            assert health(gateway)["stats"]["totalNodes"] == 2  # ws and the streaming reader
            assert "timed out: no poll or stream for 1 s" in gateway.log
        finally:
            stream.close()
        wait_totals(gateway, nodes=1, groups=1)  # the reader goes 1 s after its stream
    finally:
        ws.close()


def test_shutdown_tells_held_readers_why(launch: Callable[..., GatewayProcess]) -> None:
    gateway = launch()
    alice = bridge_node(gateway, "alice", "alpha")
    bob = bridge_node(gateway, "bob", "alpha")
    alice.drain(kinds=(), timeout=0.2)
    answers: list[Reply] = []
    poller = threading.Thread(target=lambda: answers.append(alice.poll(timeout=20)))
    poller.start()
    stream = bob.stream()
    time.sleep(0.3)
    os.kill(gateway.proc.pid, signal.SIGTERM)
    poller.join(10)
    assert answers[0].body["closed"] == {"code": 1001, "reason": "gateway shutting down"}
    event = None
    for _ in range(20):
        event = stream.next_event()
        if event["event"] == "close":
            break
    assert event is not None and json.loads(event["data"]) == {"code": 1001, "reason": "gateway shutting down"}
    stream.close()
    gateway.wait_exit()
    assert "Traceback" not in gateway.log


def test_a_stream_nobody_reads_is_dropped_and_its_messages_stay_queued(
    launch: Callable[..., GatewayProcess]
) -> None:
    gateway = launch("--max-buffer", "65536", "--bridge-queue-bytes", str(64 * 1024 * 1024), "--rate-limit", "0")
    ws = Node(gateway.url)
    try:
        ws.register("ws")
        ws.join("alpha")
        alice = bridge_node(gateway, "alice", "alpha")
        assert alice.secret is not None
        sock = stalled_stream(gateway.port, alice.secret)
        sent = flood_until_unread(gateway, ws, "alpha")
        sock.close()
        # The session lives on; a poll gets what was queued, from the start.
        first = alice.poll(after=0, timeout=0).body["messages"]
        numbers = [i["envelope"]["payload"]["n"] for i in first if i["envelope"]["type"] == "broadcast"]
        assert numbers == list(range(sent))
        ws.request("broadcast", {"groupId": "alpha", "message": "still here"})
        assert alice.next_of("broadcast")["payload"] == "still here"
        assert health(gateway)["stats"]["totalNodes"] == 2
    finally:
        ws.close()
