"""Signed tokens on a live gateway: scope, expiry, not-before, retired keys."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import jwt
import pytest
from twisted.internet.task import Clock

from harness.gatewaymark import FromFixture
from harness.memory import Harness
from harness.support import (
    GatewayProcess,
    Node,
    NodePool,
    assert_delivers,
    expect_closed,
    expect_error,
    http_get,
    wait_totals,
)
from wingman_gateway import errors
from wingman_gateway.auth import Authenticator, KeyRing


def wall_clock(offset: float = 0.0) -> Clock:
    clock = Clock()
    clock.advance(time.time() + offset)
    return clock


def signed(path: Path, **claims: object) -> str:
    """A token with any claims, signed by the ring's active key (as a third party would)."""
    doc = json.loads(path.read_text())
    key = next(k for k in doc["keys"] if k["id"] == doc["active"])
    secret = base64.urlsafe_b64decode(key["secret"] + "=" * (-len(key["secret"]) % 4))
    body = {"sub": "someone", "iss": "wingman-gateway", "iat": int(time.time()), **claims}
    return jwt.encode(body, secret, algorithm="HS256", headers={"kid": key["id"]})


@pytest.fixture
def ring_path(tmp_path: Path) -> Path:
    path = tmp_path / "keys.json"
    KeyRing.open(path, wall_clock(), create=True)
    return path


pytestmark = pytest.mark.gateway("--auth", "--keyring", FromFixture("ring_path"))


def test_scoped_token_may_not_read_stats(gateway: GatewayProcess, ring_path: Path) -> None:
    ring = KeyRing.open(ring_path, wall_clock())
    status, _, body = http_get(gateway, "/stats", {"Authorization": f"Bearer {ring.sign('s', 60, rooms=['a'])}"})
    assert status == 403
    assert json.loads(body) == {"error": {"code": "FORBIDDEN", "message":
                                "this token is limited to some rooms; this report needs an unscoped token"}}
    status, _, _ = http_get(gateway, "/stats", {"Authorization": f"Bearer {ring.sign('ops', 60)}"})
    assert status == 200


def test_scoped_node_sends_direct_messages_only_within_its_rooms(
    gateway: GatewayProcess, ring_path: Path
) -> None:
    ring = KeyRing.open(ring_path, wall_clock())
    pool = NodePool(gateway)
    try:
        mate = pool("mate", room="alpha", token=ring.sign("mate", 600))
        stranger = pool("stranger", room="beta", token=ring.sign("stranger", 600))
        scoped = pool("scoped", room="alpha", token=ring.sign("scoped", 600, rooms=["alpha"]))
        reply = scoped.request("direct", {"targetNodeId": stranger.node_id, "message": "psst"})
        expect_error(reply, "NODE_NOT_FOUND", f"no node {stranger.node_id!r} in your rooms")
        ack = scoped.request("direct", {"targetNodeId": mate.node_id, "message": "hi"})
        assert ack["type"] == "ack"
        assert mate.recv_type("direct")["payload"] == "hi"
        # Unscoped nodes reach anyone, the scoped one included.
        assert stranger.request("direct", {"targetNodeId": scoped.node_id, "message": 1})["type"] == "ack"
        assert scoped.recv_type("direct")["payload"] == 1
    finally:
        pool.close_all()


def test_a_node_is_closed_when_its_token_expires(gateway: GatewayProcess, ring_path: Path) -> None:
    ring = KeyRing.open(ring_path, wall_clock())
    pool = NodePool(gateway)
    try:
        other = pool("other", room="alpha", token=ring.sign("other", 600))
        brief = pool("brief", room="alpha", token=ring.sign("brief", 2))
        started = time.monotonic()
        expect_error(brief.recv_type("error", timeout=5), "AUTH_FAILED", "token expired")
        assert expect_closed(brief) == (1008, "token expired")
        assert 1.0 < time.monotonic() - started < 4.0
        assert other.recv_type("presence")["payload"]["event"] == "joined"
        assert other.recv_type("presence")["payload"]["reason"] == "token expired"
        late = pool("late", room="alpha", token=ring.sign("late", 600))
        assert_delivers(late, other, "alpha")
    finally:
        pool.close_all()


@pytest.mark.parametrize("claims, reason", [
    ({"nbf": time.time() + 3600}, "token not valid yet"),
    ({"iat": time.time() + 3600}, "token issued in the future"),
    ({"nbf": "soon"}, "token malformed"),
])
def test_tokens_from_the_future_are_refused(
    gateway: GatewayProcess, ring_path: Path, claims: dict, reason: str
) -> None:
    node = Node(gateway.url)
    try:
        reply = node.request("register", {"name": "early", "token": signed(ring_path, **claims)})
        expect_error(reply, "AUTH_FAILED", f"authentication failed: {reason}")
        assert expect_closed(node)[0] == 1008
    finally:
        node.close()
    # Within the allowed clock skew, and once valid, it is accepted.
    node = Node(gateway.url)
    try:
        token = signed(ring_path, nbf=time.time() + 5, iat=time.time() + 5)
        assert node.register("ok", token=token)["type"] == "ack"
    finally:
        node.close()
    wait_totals(gateway, 0, 0)


def test_expiry_in_memory_closes_at_the_exact_time(tmp_path: Path) -> None:
    h = Harness(authenticator=None)
    ring = KeyRing.open(tmp_path / "k.json", h.clock, create=True)
    h.router.authenticator = Authenticator(required=True, keyring=ring)
    session, conn = h.connect()
    reply = h.request(session, conn, "register", {"name": "n", "token": ring.sign("n", 10)})
    assert reply["type"] == "ack"
    h.clock.advance(9.9)
    assert conn.closed is None
    h.clock.advance(0.1)
    assert conn.closed == (1008, "token expired")
    assert conn.take()[-1]["payload"]["code"] == errors.AUTH_FAILED
    assert h.router.rooms.node_count() == 0
