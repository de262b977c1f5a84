"""Caps and deadlines at the edge, against a real gateway: per-source caps on
connections and nodes, the request-head deadline, the register deadline, and
the reserve that keeps /health and registered nodes served when full."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from websockets.exceptions import InvalidStatus

from harness import rawhttp
from harness.bridgekit import BridgeNode, bridge_node, error_of
from harness.startup import refusal
from harness.support import (
    GatewayProcess,
    Node,
    assert_usable,
    expect_closed,
    health,
)

STRICT = ("--exempt-source", "none")  # loopback is exempt by default


@pytest.fixture
def sockets() -> Iterator[list[Any]]:
    """Sockets and nodes a test opens; all closed at the end."""
    opened: list[Any] = []
    yield opened
    for thing in opened:
        with contextlib.suppress(Exception):
            thing.close()


def node_from(gateway: GatewayProcess, source: str, name: str) -> Node:
    """A registered WebSocket node connecting from loopback address ``source``."""
    sock = rawhttp.from_source(gateway.port, source)
    node = Node(gateway.url, sock=sock)
    assert node.register(name)["type"] == "ack"
    return node


def test_connections_per_source_are_capped_at_accept(launch, sockets) -> None:
    gateway = launch(*STRICT, "--max-connections-per-source", "4")
    held = [rawhttp.open_socket(gateway.port) for _ in range(4)]
    sockets.extend(held)
    time.sleep(0.2)
    refused = rawhttp.open_socket(gateway.port)
    sockets.append(refused)
    assert rawhttp.closed_without_answer(refused, within=2.0)
    gateway.wait_for(r"refusing connections from 127\.0\.0\.1: 4 connections from it \(limit 4\)")
    # Another address is not affected: it connects, registers and is answered.
    other = node_from(gateway, "127.0.0.2", "other")
    sockets.append(other)
    assert_usable(other)
    # Slots come back when connections close.
    for sock in held:
        sock.close()
    time.sleep(0.3)
    status, _, body = rawhttp.get(gateway.port, "/health")
    assert status == 200 and body["status"] == "healthy"


def test_registered_nodes_per_source_are_capped(launch, sockets) -> None:
    gateway = launch(*STRICT, "--max-nodes-per-source", "3")
    held = [bridge_node(gateway, f"bridge{i}") for i in range(3)]
    fourth = BridgeNode(gateway.port)
    payload = error_of(fourth.register("bridge3"), 503, "MAX_NODES_REACHED",
                       "too many nodes from 127.0.0.1 (3 at most per address)")
    assert payload["details"] == {"limit": 3, "scope": "source"}
    # Over WebSocket the same source is refused too, and closed 1013.
    ws = Node(gateway.url)
    sockets.append(ws)
    reply = ws.register("ws")
    assert reply["payload"]["code"] == "MAX_NODES_REACHED"
    assert expect_closed(ws)[0] == 1013
    # Another address registers; the held nodes keep working.
    other = node_from(gateway, "127.0.0.2", "other")
    sockets.append(other)
    assert held[0].request("ping").body["type"] == "pong"
    # A node that leaves frees its slot.
    assert held[0].request("unregister").status == 200
    assert BridgeNode(gateway.port).register("again").status == 200
    assert health(gateway)["stats"]["totalNodes"] == 4


def test_loopback_is_exempt_by_default(launch, sockets) -> None:
    gateway = launch("--max-connections-per-source", "2", "--max-nodes-per-source", "2")
    nodes = [Node(gateway.url) for _ in range(4)]
    sockets.extend(nodes)
    for index, node in enumerate(nodes):
        assert node.register(f"local{index}")["type"] == "ack"
    assert health(gateway)["stats"]["totalNodes"] == 4


def test_request_head_deadline_is_not_reset_by_trickled_bytes(launch, sockets) -> None:
    gateway = launch("--header-timeout", "1000")
    sock = rawhttp.open_socket(gateway.port)
    sockets.append(sock)
    started = time.monotonic()
    sock.sendall(b"GET /health HTTP/1.1\r\n")
    answer = b""
    sock.settimeout(0.25)
    for _ in range(40):  # one header line every 0.25 s, for at most 10 s
        try:
            sock.sendall(b"X-Trickle: 1\r\n")
            chunk = sock.recv(4096)
        except socket.timeout:
            continue
        except OSError:
            break
        if not chunk:
            break
        answer += chunk
    elapsed = time.monotonic() - started
    status, headers, body = rawhttp.parse_response(answer)
    assert status == 408 and headers["connection"] == "close"
    assert json.loads(body)["payload"] == {
        "code": "INVALID_REQUEST", "message": "request head not complete within the time allowed"}
    assert 0.9 < elapsed < 3.0, elapsed
    gateway.wait_for(r"request head from 127\.0\.0\.1:\d+ not complete within 1 s: closed")
    # An idle keep-alive connection is closed too, quietly, after its answer.
    idle = rawhttp.open_socket(gateway.port)
    sockets.append(idle)
    idle.sendall(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{gateway.port}\r\n\r\n".encode())
    status, _, _ = rawhttp.parse_response(rawhttp.read_until_closed(idle, timeout=5))
    assert status == 200
    assert health(gateway)["status"] == "healthy"


def test_unregistered_connections_must_register_in_time(launch, sockets) -> None:
    gateway = launch("--register-timeout", "1000")
    member = Node(gateway.url)
    sockets.append(member)
    assert member.register("member")["type"] == "ack"
    lurker = Node(gateway.url)
    sockets.append(lurker)
    started = time.monotonic()
    code = reason = None
    for _ in range(50):  # a JSON ping every 0.1 s is answered, but is no registration
        try:
            lurker.send({"type": "ping"})
            assert lurker.recv(timeout=2)["type"] == "pong"
        except Exception:  # noqa: BLE001 - the close ends the loop
            code, reason = expect_closed(lurker)
            break
        time.sleep(0.1)
    assert (code, reason) == (1008, "did not register within 1 s")
    assert 0.9 < time.monotonic() - started < 3.5
    time.sleep(1.2)
    assert_usable(member)  # registered nodes are not touched


def test_reserve_keeps_health_and_sessions_served_when_full(launch, sockets, tmp_path: Path) -> None:
    """maxConnections 6, reserve 2 (config file keys): past 4 open connections only
    /health and existing bridge sessions are served; past 6 connections are refused."""
    config = tmp_path / "gateway.json"
    config.write_text(json.dumps({"maxConnections": 6, "connectionReserve": 2, "headerTimeout": 60000}))
    gateway = launch("--config", str(config))
    member = Node(gateway.url)
    sockets.append(member)
    assert member.register("member")["type"] == "ack"
    poller = bridge_node(gateway, "poller")
    idle = [rawhttp.open_socket(gateway.port) for _ in range(3)]  # 4 open with the member
    sockets.extend(idle)
    time.sleep(0.2)
    # A fifth connection is in the reserve: /health and a session's poll are served...
    status, _, body = rawhttp.get(gateway.port, "/health")
    assert status == 200 and body["status"] == "healthy"
    assert poller.poll(timeout=0).status == 200
    # ...a new WebSocket node or bridge registration is not.
    with pytest.raises(InvalidStatus) as refused:
        Node(gateway.url)
    assert refused.value.response.status_code == 503
    assert json.loads(refused.value.response.body)["payload"]["code"] == "MAX_NODES_REACHED"
    late = BridgeNode(gateway.port).post({"type": "register", "payload": {"name": "late"}})
    error_of(late, 503, "MAX_NODES_REACHED")
    assert late.headers["retry-after"] == "5"
    # Past the cap itself connections are refused at accept.
    extra = [rawhttp.open_socket(gateway.port) for _ in range(2)]
    sockets.extend(extra)
    time.sleep(0.2)
    over = rawhttp.open_socket(gateway.port)
    sockets.append(over)
    assert rawhttp.closed_without_answer(over)
    gateway.wait_for(r"refusing connections from 127\.0\.0\.1: 6 connections open \(limit 6\)")
    assert_usable(member)  # the registered node keeps working throughout
    for sock in idle + extra:
        sock.close()
    time.sleep(0.3)
    assert BridgeNode(gateway.port).register("later").status == 200


@pytest.mark.parametrize("args,message", [
    (["--exempt-source", "10.0.0.0/33"], "--exempt-source: '10.0.0.0/33' is not a network like 10.0.0.0/8 or ::1/128"),
    (["--max-connections", "4", "--connection-reserve", "4"], "connectionReserve: must be less than maxConnections"),
    (["--header-timeout", "5"], "--header-timeout: must be at least 100, got 5"),
])
def test_bad_edge_settings_stop_startup(args: list[str], message: str) -> None:
    assert message in refusal(["--listen", "tcp:0:interface=127.0.0.1", *args])
