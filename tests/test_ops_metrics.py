"""Prometheus metrics: a real Prometheus scrapes a real gateway; /metrics parsed by the library."""

from __future__ import annotations

import json
import os
import signal
import re
import time
from pathlib import Path
from typing import Iterator

import pytest

from harness.bridgekit import bridge_node, call, flood_until_unread, stalled_stream
from harness.opskit import ADMIN_TOKEN, OpsGateway, Prometheus, parse, total, value
from harness.support import (
    Node,
    NodePool,
    expect_closed,
    expect_error,
    raw_websocket,
    send_text_frame,
    start_gateway,
    wait_until,
)

NODE_TOKEN = "node-token-4bd1f0e2a7"
DASHBOARD = Path(__file__).resolve().parent.parent / "contrib" / "grafana" / "wingman-gateway.json"


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpsGateway]:
    gateway = OpsGateway(
        tmp_path_factory.mktemp("metrics"), "--auth", "--token", NODE_TOKEN,
        "--rate-limit", "30", "--rate-window", "60000",
    )
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture(scope="module")
def prometheus(ops: OpsGateway, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    server = Prometheus(tmp_path_factory.mktemp("prometheus"), ops.metrics_port)
    try:
        yield server
    finally:
        server.stop()


def test_every_listed_metric_is_exported_at_zero_when_its_part_is_off(ops: OpsGateway) -> None:
    series = ops.scrape()
    for transport in ("websocket", "http", "ssh"):
        assert value(series, "wingman_gateway_connections", transport=transport) == 0
        assert value(series, "wingman_gateway_deliveries_total", transport=transport) == 0
        assert value(series, "wingman_gateway_slow_consumers_total", transport=transport) == 0
        assert value(series, "wingman_gateway_heartbeat_timeouts_total", transport=transport) == 0
    for name in ("nodes", "rooms", "bridge_sessions", "rate_limited_total",
                 "bridge_sessions_opened_total", "ssh_forwards_refused_total",
                 "backplane_forwarded_total", "backplane_lost_total",
                 "received_bytes_total", "sent_bytes_total"):
        assert value(series, "wingman_gateway_" + name) == 0, name
    assert value(series, "wingman_gateway_ssh_logins_total", result="accepted") == 0
    assert value(series, "wingman_gateway_backplane_state", state="off") == 1
    assert value(series, "wingman_gateway_backplane_state", state="connected") == 0
    assert value(series, "wingman_gateway_errors_sent_total", code="RATE_LIMITED") == 0
    assert value(series, "wingman_gateway_auth_failures_total", reason="token_not_accepted") == 0
    assert value(series, "wingman_gateway_envelope_handling_seconds_count") == 0
    assert ("wingman_gateway_event_loop_lag_seconds_count", ()) in series
    # The library's process collectors, in this gateway's own registry.
    assert value(series, "process_resident_memory_bytes") > 0
    assert value(series, "process_open_fds") > 0
    assert ("process_cpu_seconds_total", ()) in series
    # Low cardinality: no label value is a node id or a room name, ever.
    for (_, labels), _ in series.items():
        for key, label in labels:
            assert key in {"transport", "type", "code", "reason", "credential", "result", "state",
                           "status", "le", "version", "name", "generation", "implementation",
                           "major", "minor", "patchlevel"}, key


def test_listener_metrics_need_the_admin_credential(ops: OpsGateway) -> None:
    reply = call(ops.port, "GET", "/metrics")
    assert reply.status == 401 and reply.body["error"]["code"] == "AUTH_FAILED"
    assert reply.headers["www-authenticate"] == 'Bearer realm="wingman-gateway"'
    for wrong in ("Bearer nope", f"Bearer {NODE_TOKEN}", f"Bearer {ADMIN_TOKEN}x"):
        reply = call(ops.port, "GET", "/metrics", headers={"Authorization": wrong})
        assert reply.status == 403 and reply.body["error"]["code"] == "FORBIDDEN", wrong
    reply = call(ops.port, "GET", "/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert reply.status == 200
    assert ("wingman_gateway_nodes", ()) in parse(reply.raw.decode())


def test_prometheus_sees_exactly_the_deliveries_made(ops: OpsGateway, prometheus: Prometheus) -> None:
    pool = NodePool(ops.process)
    try:
        sender = pool("sender", token=NODE_TOKEN)
        receivers = [pool(f"receiver{i}", token=NODE_TOKEN) for i in range(3)]
        for node in (sender, *receivers):
            assert node.join("metered")["type"] == "ack"
        for node in receivers:  # the presence notices have been delivered
            wait_until(lambda n=node: _drain(n), 5, "presence to arrive")
        deliveries = 'wingman_gateway_deliveries_total{transport="websocket"}'
        broadcasts_in = 'wingman_gateway_messages_received_total{type="broadcast"}'
        series = ops.scrape()
        before = value(series, "wingman_gateway_deliveries_total", transport="websocket")
        received = value(series, "wingman_gateway_messages_received_total", type="broadcast")
        prometheus.reaches(deliveries, before)  # Prometheus holds the state before the traffic
        broadcasts = 7
        for index in range(broadcasts):
            reply = sender.request("broadcast", {"groupName": "metered", "message": {"n": index}})
            assert reply["payload"]["recipients"] == 3
        assert sender.request("direct", {"targetNodeId": receivers[0].node_id, "message": "hi"})[
            "type"] == "ack"
        for node in receivers:
            for index in range(broadcasts):
                assert node.recv_type("broadcast")["payload"] == {"n": index}
        prometheus.reaches(deliveries, before + broadcasts * 3 + 1)
        # Exactly: a later scrape (after this moment) still shows no more.
        prometheus.scraped_after(time.time())
        assert prometheus.scalar(deliveries) == before + broadcasts * 3 + 1
        assert prometheus.scalar(broadcasts_in) == received + broadcasts
        assert prometheus.scalar(f"increase({deliveries}[1m])") is not None
        assert prometheus.scalar("wingman_gateway_nodes") == 4
        assert prometheus.scalar('wingman_gateway_connections{transport="websocket"}') == 4
        assert prometheus.scalar("wingman_gateway_rooms") == 1
        assert prometheus.scalar('up{job="wingman"}') == 1
        quantile = prometheus.scalar(
            "histogram_quantile(0.99, sum(rate(wingman_gateway_envelope_handling_seconds_bucket[1m])) by (le))"
        )
        assert quantile is not None and 0 < quantile < 0.1
    finally:
        pool.close_all()


def _drain(node: Node) -> bool:
    """True once nothing more arrives for a moment (the node's backlog is read)."""
    try:
        node.recv(0.3)
    except TimeoutError:
        return True
    return False


def test_refusals_are_counted_by_code_and_reason(ops: OpsGateway) -> None:
    before = ops.scrape()
    pool = NodePool(ops.process)
    try:
        stranger = pool()
        expect_error(stranger.register("stranger", token="wrong-token"), "AUTH_FAILED")
        assert expect_closed(stranger)[0] == 1008
        chatty = pool("chatty", token=NODE_TOKEN)
        assert chatty.join("quota")["type"] == "ack"
        limited = 0
        for index in range(40):
            reply = chatty.request("broadcast", {"groupName": "quota", "message": index})
            limited += reply["type"] == "error" and reply["payload"]["code"] == "RATE_LIMITED"
        assert limited >= 10
        after = ops.scrape()
    finally:
        pool.close_all()

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("wingman_gateway_auth_failures_total", reason="token_not_accepted") == 1
    assert grew("wingman_gateway_errors_sent_total", code="AUTH_FAILED") == 1
    assert grew("wingman_gateway_errors_sent_total", code="RATE_LIMITED") == limited
    assert grew("wingman_gateway_rate_limited_total") == limited
    assert grew("wingman_gateway_registrations_total", credential="shared") == 1
    assert total(after, "wingman_gateway_received_bytes_total") > total(
        before, "wingman_gateway_received_bytes_total")


def test_heartbeat_timeouts_are_counted(tmp_path: Path) -> None:
    gateway = OpsGateway(tmp_path, "--ping-interval", "200", "--ping-timeout", "600")
    try:
        silent = Node(gateway.process.url)
        assert silent.register("silent")["type"] == "ack"
        assert expect_closed(silent, timeout=10)[0] == 1008
        series = wait_until(
            lambda: (s := gateway.scrape())
            and value(s, "wingman_gateway_heartbeat_timeouts_total", transport="websocket") == 1
            and s, 10, "the timeout to be counted")
        assert value(series, "wingman_gateway_heartbeat_timeouts_total", transport="http") == 0
        assert value(series, "wingman_gateway_nodes") == 0
    finally:
        gateway.stop()


def test_dashboard_queries_only_exported_metrics(ops: OpsGateway) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]
    assert len(expressions) >= 12
    exported = {name for name, _ in ops.scrape()}
    functions = {"rate", "sum", "by", "histogram_quantile", "increase", "le", "irate", "max",
                 "without", "avg", "topk", "transport", "type", "code", "reason", "state",
                 "result", "credential", "status", "job", "instance", "on", "ignoring"}
    used: set[str] = set()
    for expression in expressions:
        bare = re.sub(r'"[^"]*"|\[[^\]]*\]|\{[^}]*\}', " ", expression)
        for word in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", bare):
            if word not in functions:
                used.add(word)
    assert used, expressions
    missing = sorted(used - exported)
    assert missing == [], f"the dashboard queries metrics the gateway does not export: {missing}"
    assert {"wingman_gateway_deliveries_total", "wingman_gateway_connections",
            "wingman_gateway_event_loop_lag_seconds_bucket"} <= used


def test_slow_consumers_are_counted(tmp_path: Path) -> None:
    gateway = OpsGateway(tmp_path, "--max-buffer", "65536", "--rate-limit", "0")
    pool = NodePool(gateway.process)
    stalled = raw_websocket(gateway.port, receive_buffer=4096)
    try:
        sender = pool("sender", room="flood")
        send_text_frame(stalled, {"type": "register", "payload": {"name": "stalled"}})
        send_text_frame(stalled, {"type": "join_group", "payload": {"groupName": "flood"}})
        wait_until(lambda: value(gateway.scrape(), "wingman_gateway_nodes") == 2, 10, "the stalled node")
        wait_until(lambda: sender.recv_type("presence"), 5, "its presence")
        blob = "x" * 60000
        for seq in range(300):  # bounded: the stalled node is cut off long before
            ack = sender.request("broadcast", {"groupName": "flood", "message": {"seq": seq, "b": blob}})
            if ack["payload"]["recipients"] == 0:
                break
        assert ack["payload"]["recipients"] == 0, "the stalled node was never cut off"
        series = gateway.scrape()
        assert value(series, "wingman_gateway_slow_consumers_total", transport="websocket") == 1
        assert value(series, "wingman_gateway_heartbeat_timeouts_total", transport="websocket") == 0
        assert value(series, "wingman_gateway_nodes") == 1
    finally:
        stalled.close()
        pool.close_all()
        gateway.stop()


def test_without_an_admin_credential_only_the_private_endpoint_serves_metrics() -> None:
    gateway = start_gateway("--metrics-listen", "tcp:0:interface=127.0.0.1")
    try:
        gateway.wait_listening()
        port = int(gateway.bound["metrics"]["port"])  # type: ignore[index]
        assert call(port, "GET", "/metrics").status == 200
        for method, path in (("GET", "/metrics"), ("GET", "/api/rooms"), ("POST", "/api/publish")):
            reply = call(gateway.port, method, path, headers={"Authorization": "Bearer anything"})
            assert reply.status == 403, reply
            assert reply.body["error"]["message"].startswith("no admin credential is configured")
        assert call(gateway.port, "GET", "/stats").status == 200  # neither auth nor admin: public
        assert call(port, "GET", "/api/rooms").status == 404  # the private endpoint has metrics only
    finally:
        gateway.stop()
    plain = start_gateway()
    try:
        plain.wait_listening()
        assert plain.bound["metrics"] is None  # type: ignore[index]
        reply = call(plain.port, "GET", "/metrics")  # no metrics kept at all
        assert reply.status == 403 and reply.body["error"]["code"] == "FORBIDDEN"
    finally:
        plain.stop()


def test_sighup_rereads_the_admin_token(tmp_path: Path) -> None:
    gateway = OpsGateway(tmp_path)
    try:
        assert gateway.api("GET", "rooms").status == 200
        gateway.token_file.write_text("the-next-admin-token-0b3c\n")
        os.kill(gateway.process.pid, signal.SIGHUP)
        wait_until(lambda: gateway.api("GET", "rooms", token="the-next-admin-token-0b3c").status
                   == 200, 10, "the new admin token to be accepted")
        assert gateway.api("GET", "rooms").status == 403
        gateway.token_file.write_text("\n")  # a broken file keeps the token in force
        os.kill(gateway.process.pid, signal.SIGHUP)
        gateway.process.wait_for("cannot re-read admin token file")
        assert gateway.api("GET", "rooms", token="the-next-admin-token-0b3c").status == 200
    finally:
        gateway.stop()


def test_bridge_queue_losses_are_counted(tmp_path: Path) -> None:
    gateway = OpsGateway(tmp_path, "--bridge-queue", "5", "--rate-limit", "0")
    pool = NodePool(gateway.process)
    try:
        sender = pool("sender", room="full")
        listener = pool("listener", room="full")
        idle = bridge_node(gateway.process, "idle", "full")  # joins last: no presence queued
        wait_until(lambda: listener.recv_type("presence"), 5, "the bridge node's presence")
        for n in range(12):  # the idle session takes 5, then drops 7
            ack = sender.request("broadcast", {"groupId": "full", "message": {"n": n}})
            assert ack["payload"]["recipients"] == 2
        assert [listener.recv_type("broadcast")["payload"]["n"] for _ in range(12)] == list(range(12))
        series = gateway.scrape()
        assert value(series, "wingman_gateway_bridge_messages_dropped_total") == 7
        # Each was handed to the session (a delivery), which kept 5 and dropped 7.
        assert value(series, "wingman_gateway_deliveries_total", transport="http") == 12
        # The notice waits for room in the queue: not sent yet.
        assert value(series, "wingman_gateway_errors_sent_total", code="MESSAGES_LOST") == 0
        first = idle.poll(timeout=0).body["messages"]
        assert [item["envelope"]["payload"]["n"] for item in first] == [0, 1, 2, 3, 4]
        [notice] = [item["envelope"] for item in idle.poll(timeout=1).body["messages"]]
        assert expect_error(notice, "MESSAGES_LOST")["details"]["lost"] == 7
        series = gateway.scrape()
        assert value(series, "wingman_gateway_errors_sent_total", code="MESSAGES_LOST") == 1
        assert value(series, "wingman_gateway_bridge_messages_dropped_total") == 7
        assert value(series, "wingman_gateway_slow_consumers_total", transport="http") == 0
        # Everyone keeps working, the idle node too, once it reads.
        sender.request("broadcast", {"groupId": "full", "message": "after"})
        assert idle.next_of("broadcast")["payload"] == "after"
        assert listener.recv_type("broadcast")["payload"] == "after"
        assert value(gateway.scrape(), "wingman_gateway_nodes") == 3
    finally:
        pool.close_all()
        gateway.stop()


def test_a_bridge_stream_nobody_reads_is_counted_as_a_slow_consumer(tmp_path: Path) -> None:
    gateway = OpsGateway(tmp_path, "--max-buffer", "65536", "--rate-limit", "0",
                         "--bridge-queue-bytes", str(64 * 1024 * 1024))
    pool = NodePool(gateway.process)
    try:
        sender = pool("sender", room="streamed")
        reader = bridge_node(gateway.process, "reader", "streamed")
        assert reader.secret is not None
        stalled = stalled_stream(gateway.port, reader.secret)
        try:
            sent = flood_until_unread(gateway.process, sender, "streamed")
        finally:
            stalled.close()
        series = gateway.scrape()
        assert value(series, "wingman_gateway_slow_consumers_total", transport="http") == 1
        assert value(series, "wingman_gateway_slow_consumers_total", transport="websocket") == 0
        assert value(series, "wingman_gateway_bridge_messages_dropped_total") == 0
        assert value(series, "wingman_gateway_errors_sent_total", code="MESSAGES_LOST") == 0
        # The session stays: a poll gets every message, the gateway goes on.
        numbers = [i["envelope"]["payload"]["n"] for i in reader.poll(after=0, timeout=0).body["messages"]
                   if i["envelope"]["type"] == "broadcast"]
        assert numbers == list(range(sent))
        assert sender.request("ping")["type"] == "pong"
        assert value(gateway.scrape(), "wingman_gateway_nodes") == 2
    finally:
        pool.close_all()
        gateway.stop()
