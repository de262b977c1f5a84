"""The HTTP bridge of the real gateway process, spoken with ``http.client``:
sessions and their secrets, statuses, auth, CORS, body limits and settings."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from harness.bridgekit import (
    BridgeNode,
    bridge_node,
    call,
    error_of,
    raw_request,
    read_head,
)
from harness.support import (
    GatewayProcess,
    Node,
    NodePool,
    expect_error,
    health,
    http_get,
    rss_kib,
    running_gateway,
    wait_totals,
)


# --- sessions -------------------------------------------------------------------


def test_register_gives_a_secret_that_is_not_the_public_node_id(gateway: GatewayProcess, pool: NodePool) -> None:
    ws = pool("ws", "alpha")
    alice = BridgeNode(gateway.port)
    reply = alice.register("alice", capabilities=["chat"])
    assert reply.status == 200 and reply.headers["content-type"] == "application/json"
    assert reply.headers["cache-control"] == "no-store"
    ack = reply.body
    assert ack["type"] == "ack" and ack["payload"]["action"] == "register"
    secret, node_id = ack["session"], ack["payload"]["nodeId"]
    assert len(secret) >= 40 and secret != node_id and node_id not in secret
    joined = alice.join("alpha")
    assert joined.status == 200 and {m["name"] for m in joined.body["payload"]["members"]} == {"ws", "alice"}
    presence = ws.recv_type("presence")
    assert presence["payload"]["nodeId"] == node_id and presence["payload"]["name"] == "alice"
    # The secret is nowhere a member or an operator sees it.
    assert secret not in json.dumps(presence)
    status, _, stats = http_get(gateway, "/stats")
    assert status == 200 and secret not in stats
    nodes = json.loads(stats)["nodes"]["nodes"]
    assert {n["name"]: n["transport"] for n in nodes} == {"ws": "websocket", "alice": "http"}
    # Presenting it three ways, including the query (EventSource cannot send headers).
    alice.secret = None
    assert call(gateway.port, "GET", "/bridge/poll?timeout=0", headers={"Authorization": f"Bearer {secret}"}).status == 200
    assert call(gateway.port, "GET", f"/bridge/poll?timeout=0&session={secret}").status == 200
    reply = call(gateway.port, "POST", f"/bridge/send?session={secret}", b'{"type":"join_group"}')
    error_of(reply, 401, "NOT_REGISTERED")  # not on POST: a query is no place for it there
    assert secret not in gateway.log  # never logged, query included
    assert "session=[redacted]" in gateway.log


def test_missing_or_wrong_session_is_401_and_nothing_else_is_touched(gateway: GatewayProcess, pool: NodePool) -> None:
    ws = pool("ws", "alpha")
    alice = bridge_node(gateway, "alice", "alpha")
    ws.recv_type("presence")
    anonymous = BridgeNode(gateway.port)
    reply = anonymous.post({"type": "broadcast", "messageId": 1, "payload": {"groupId": "alpha", "message": 1}})
    error_of(reply, 401, "NOT_REGISTERED", "register before sending this message")
    assert reply.headers["www-authenticate"] == 'Bearer realm="wingman-gateway"'
    for path in ("/bridge/poll", "/bridge/sse"):
        reply = call(gateway.port, "GET", path)
        error_of(reply, 401, "NOT_REGISTERED")
        assert "X-Wingman-Session" in reply.body["payload"]["message"]
    forged = BridgeNode(gateway.port)
    forged.secret = alice.secret[:-2] + ("xy" if not alice.secret.endswith("xy") else "zz")
    for reply in (
        forged.post({"type": "broadcast", "payload": {"groupId": "alpha", "message": "forged"}}),
        forged.poll(timeout=0),
        call(gateway.port, "POST", "/bridge/ack?after=1", headers=forged.headers()),
    ):
        error_of(reply, 401, "AUTH_FAILED", "unknown or expired bridge session")
    node_id = alice.node_id
    forged.secret = node_id  # the public node id is no credential
    error_of(forged.poll(timeout=0), 401, "AUTH_FAILED")
    # Nothing reached the room; both nodes still work.
    assert alice.broadcast("alpha", {"real": True}).status == 200
    got = ws.recv_type("broadcast")
    assert got["payload"] == {"real": True} and got["fromNodeId"] == node_id
    assert wait_totals(gateway, nodes=2, groups=1)


def test_each_refusal_has_its_http_status(launch: Callable[..., GatewayProcess]) -> None:
    gateway = launch("--rate-limit", "8", "--max-rooms-per-node", "1")
    alice = bridge_node(gateway, "alice", "alpha")
    bob = bridge_node(gateway, "bob")
    error_of(alice.post("{not json"), 400, "INVALID_MESSAGE", "message is not valid JSON")
    error_of(alice.post(""), 400, "INVALID_MESSAGE")
    error_of(alice.request("teleport"), 400, "UNKNOWN_MESSAGE_TYPE")
    error_of(alice.request("broadcast", {"groupId": "alpha"}), 400, "INVALID_REQUEST", "'message' is required")
    error_of(bob.broadcast("nowhere", 1), 404, "GROUP_NOT_FOUND", "no room 'nowhere'")
    error_of(bob.request("direct", {"targetNodeId": "0000", "message": 1}), 404, "NODE_NOT_FOUND")
    error_of(bob.broadcast("alpha", 1), 403, "NOT_A_MEMBER")
    error_of(alice.join("beta"), 403, "FORBIDDEN")
    error_of(alice.register("again"), 409, "ALREADY_REGISTERED")
    # Every message is metered: alice sent 8, the ninth is refused (pings
    # have a bucket of their own).
    reply = alice.request("ping")
    assert reply.status == 200 and reply.body["type"] == "pong"
    limited = alice.broadcast("alpha", "over")
    payload = error_of(limited, 429, "RATE_LIMITED")
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert payload["retryAfterMs"] > 0
    # Refusals leave the session usable.
    assert alice.poll(timeout=0).status == 200
    assert alice.request("ping").status == 200
    # A broadcast without a messageId has no direct reply.
    carol = bridge_node(gateway, "carol", "alpha")
    assert carol.post({"type": "broadcast", "payload": {"groupId": "alpha", "message": 1}}).status == 204


def test_unregister_ends_the_session_and_tells_the_room(gateway: GatewayProcess, pool: NodePool) -> None:
    ws = pool("ws", "alpha")
    alice = bridge_node(gateway, "alice", "alpha")
    ws.recv_type("presence")
    reply = alice.request("unregister")
    assert reply.status == 200 and reply.body["payload"] == {"nodeId": alice.node_id, "action": "unregister"}
    left = ws.recv_type("presence")
    assert left["payload"]["event"] == "left" and left["payload"]["reason"] == "unregistered"
    error_of(alice.poll(timeout=0), 401, "AUTH_FAILED")
    assert wait_totals(gateway, nodes=1, groups=1)


def test_auth_on_needs_a_token_and_the_session_is_the_credential_after(launch: Callable[..., GatewayProcess]) -> None:
    gateway = launch("--auth", "--token", "s3cret-token")
    anonymous = BridgeNode(gateway.port)
    reply = anonymous.register("alice")
    error_of(reply, 401, "AUTH_FAILED", "authentication failed: token required")
    error_of(anonymous.register("alice", token="wrong"), 401, "AUTH_FAILED")
    assert anonymous.secret is None and health(gateway)["stats"]["totalNodes"] == 0
    alice = BridgeNode(gateway.port)
    assert alice.register("alice", token="s3cret-token").status == 200
    assert alice.join("alpha").status == 200
    # The auth token is not a session secret.
    error_of(call(gateway.port, "GET", "/bridge/poll?timeout=0", headers={"Authorization": "Bearer s3cret-token"}),
             401, "AUTH_FAILED")
    assert alice.poll(timeout=0).status == 200
    assert "s3cret-token" not in gateway.log and alice.secret not in gateway.log


def test_a_full_gateway_is_503(launch: Callable[..., GatewayProcess]) -> None:
    gateway = launch("--max-nodes", "1")
    bridge_node(gateway, "alice")
    reply = BridgeNode(gateway.port).register("bob")
    error_of(reply, 503, "MAX_NODES_REACHED")
    assert reply.headers["retry-after"] == "5"
    assert health(gateway)["stats"]["totalNodes"] == 1


def test_no_bridge_turns_it_off_and_health_stays(launch: Callable[..., GatewayProcess]) -> None:
    gateway = launch("--no-bridge")
    reply = call(gateway.port, "POST", "/bridge/send", b'{"type":"ping"}')
    assert reply.status == 404
    assert health(gateway)["status"] == "healthy"
    node = Node(gateway.url)
    try:
        assert node.register("ws")["type"] == "ack"
    finally:
        node.close()


# --- CORS and body limits -------------------------------------------------------------------


def test_cors_preflight_and_requests_for_allowed_and_other_origins(launch: Callable[..., GatewayProcess]) -> None:
    allowed = "http://127.0.0.1:8123"
    gateway = launch("--cors-origin", allowed, "--cors-origin", "https://app.example")
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, x-wingman-session",
    }
    reply = call(gateway.port, "OPTIONS", "/bridge/send", headers={"Origin": allowed, **preflight})
    assert reply.status == 204
    assert reply.headers["access-control-allow-origin"] == allowed
    assert reply.headers["access-control-allow-methods"] == "GET, POST, OPTIONS"
    assert {h.strip().lower() for h in reply.headers["access-control-allow-headers"].split(",")} >= {
        "content-type", "x-wingman-session", "authorization", "last-event-id",
    }
    assert reply.headers["vary"] == "Origin"
    other = "http://127.0.0.1:8124"
    reply = call(gateway.port, "OPTIONS", "/bridge/send", headers={"Origin": other, **preflight})
    assert reply.status == 403 and not any(h.startswith("access-control") for h in reply.headers)
    # Requests: an allowed page reads the answer; another origin is refused and nothing happens.
    reply = call(gateway.port, "POST", "/bridge/send", b'{"type":"register","payload":{"name":"page"}}',
                 headers={"Origin": allowed})
    assert reply.status == 200 and reply.headers["access-control-allow-origin"] == allowed
    assert reply.headers["access-control-expose-headers"] == "Retry-After"
    reply = call(gateway.port, "POST", "/bridge/send", b'{"type":"register","payload":{"name":"evil"}}',
                 headers={"Origin": other})
    error_of(reply, 403, "FORBIDDEN", "origin 'http://127.0.0.1:8124' is not allowed to use this gateway's HTTP bridge")
    assert not any(h.startswith("access-control") for h in reply.headers)
    assert [n["name"] for n in json.loads(http_get(gateway, "/stats")[2])["nodes"]["nodes"]] == ["page"]
    # Without --cors-origin no origin is allowed.
    plain = launch()
    reply = call(plain.port, "OPTIONS", "/bridge/poll", headers={"Origin": allowed, **preflight})
    assert reply.status == 403 and "access-control-allow-origin" not in reply.headers
    assert call(plain.port, "POST", "/bridge/send", b'{"type":"ping"}').status == 200  # no Origin: not a page


def test_oversized_body_is_refused_before_it_is_read(launch: Callable[..., GatewayProcess]) -> None:
    gateway = launch("--max-payload", "4096", "--cors-origin", "http://127.0.0.1:8123")
    ws = Node(gateway.url)
    try:
        ws.register("ws")
        ws.join("alpha")
        alice = bridge_node(gateway, "alice", "alpha")
        rss_before = rss_kib(gateway.proc.pid)
        # 512 MiB declared, none of it sent yet: the answer comes anyway.
        sock = raw_request(
            gateway.port,
            "POST /bridge/send HTTP/1.1\r\nHost: x\r\nOrigin: http://127.0.0.1:8123\r\n"
            f"X-Wingman-Session: {alice.secret}\r\nContent-Length: {512 * 1024 * 1024}\r\n\r\n",
        )
        status, headers, rest = read_head(sock)
        assert status == 413 and headers["connection"] == "close"
        assert headers["access-control-allow-origin"] == "http://127.0.0.1:8123"
        body = json.loads(rest)
        assert expect_error(body, "PAYLOAD_TOO_LARGE")["message"] == (
            f"message of {512 * 1024 * 1024} bytes exceeds the limit of 4096 bytes"
        )
        # Sending the body anyway: it is thrown away as it comes, never buffered.
        sent = 0
        try:
            chunk = b"x" * 65536
            deadline = time.monotonic() + 10
            while sent < 32 * 1024 * 1024 and time.monotonic() < deadline:
                sent += sock.send(chunk)
        except OSError:
            pass  # the gateway stopped reading and closed: fine
        sock.close()
        assert rss_kib(gateway.proc.pid) - rss_before < 16 * 1024
        # A chunked body is cut off when it passes the limit.
        sock = raw_request(
            gateway.port,
            "POST /bridge/send HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + "".join(f"400\r\n{' ' * 1024}\r\n" for _ in range(5)),
        )
        status, _, rest = read_head(sock)
        assert status == 413 and json.loads(rest)["payload"]["code"] == "PAYLOAD_TOO_LARGE"
        sock.close()
        # The gateway and its nodes carry on; a body at the limit passes.
        envelope = json.dumps({"type": "broadcast", "messageId": "big", "payload": {"groupId": "alpha", "message": "m"}})
        assert alice.post(envelope + " " * (4096 - len(envelope))).status == 200
        assert ws.recv_type("broadcast")["payload"] == "m"
        assert health(gateway)["status"] == "healthy"
    finally:
        ws.close()


def test_bridge_settings_from_the_config_file_and_bad_values(tmp_path: Path) -> None:
    config = tmp_path / "gateway.json"
    config.write_text(json.dumps({"bridge": False}))
    with running_gateway("--config", str(config)) as gateway:
        assert call(gateway.port, "POST", "/bridge/send", b'{"type":"ping"}').status == 404
    config.write_text(json.dumps({"corsOrigins": ["http://127.0.0.1:8123"], "bridgeQueue": 2}))
    with running_gateway("--config", str(config)) as gateway:
        reply = call(gateway.port, "OPTIONS", "/bridge/poll", headers={"Origin": "http://127.0.0.1:8123"})
        assert reply.headers["access-control-allow-origin"] == "http://127.0.0.1:8123"
    for args, message in (
        (["--cors-origin", "http://127.0.0.1:8123/page"], "--cors-origin: expected an origin like"),
        (["--bridge-queue", "0"], "--bridge-queue: must be at least 1, got 0"),
        (["--bridge-session-timeout", "soon"], "--bridge-session-timeout: expected a whole number"),
    ):
        refused = GatewayProcess(["--listen", "tcp:0:interface=127.0.0.1", *args])
        assert refused.wait_exit() != 0
        assert message in refused.log, refused.log
    config.write_text(json.dumps({"corsOrigins": "ftp://nope"}))
    refused = GatewayProcess(["--listen", "tcp:0:interface=127.0.0.1", "--config", str(config)])
    assert refused.wait_exit() != 0 and "corsOrigins: expected an origin like" in refused.log
