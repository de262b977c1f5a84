"""Auth modes of the real gateway: shared token, signed tokens, both, key rotation.

Also the HTTP side (/health public, /stats behind the token) and that no
secret ever shows up in the log, an error message or /stats.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from twisted.internet.task import Clock

import wingman_gateway
from harness.support import (
    GatewayProcess,
    Node,
    NodePool,
    assert_delivers,
    assert_usable,
    expect_closed,
    expect_error,
    health,
    http_get,
    running_gateway,
    start_gateway,
    wait_until,
)
from wingman_gateway.auth import KeyRing

SHARED = "shared-" + secrets.token_urlsafe(24)
_ABSENT = object()


class SecretWatch:
    """Everything secret the tests used, and everything the gateways showed."""

    def __init__(self) -> None:
        self.secrets: set[str] = {SHARED}
        self.messages: list[str] = []
        self.gateways: list[GatewayProcess] = []

    def token(self, token: str) -> str:
        self.secrets.add(token)
        signature = token.rsplit(".", 1)[-1]
        if len(signature) >= 16:
            self.secrets.add(signature)  # on its own, too
        return token

    def ring(self, path: Path) -> None:
        """Every key secret in the file, in the encodings it could leak in."""
        for key in json.loads(path.read_text())["keys"]:
            raw = base64.urlsafe_b64decode(key["secret"])
            self.secrets.update({key["secret"].rstrip("="), raw.hex(), base64.b64encode(raw).decode()})


@pytest.fixture(scope="module")
def watch() -> SecretWatch:
    return SecretWatch()


def now_clock(offset: float = 0.0) -> Clock:
    """A Clock at the current wall time (plus ``offset``), for signing tokens."""
    clock = Clock()
    clock.advance(time.time() + offset)
    return clock


def refused(gateway: GatewayProcess, watch: SecretWatch, token: Any, reason: str) -> None:
    """A register with ``token`` gets AUTH_FAILED, then the connection closes with 1008."""
    node = Node(gateway.url)
    try:
        assert_usable(node)  # unauthenticated connections may ping
        payload: dict[str, Any] = {"name": "intruder"}
        if token is not _ABSENT:
            payload["token"] = token
        reply = node.request("register", payload)
        error = expect_error(reply, "AUTH_FAILED", f"authentication failed: {reason}")
        watch.messages.append(json.dumps(reply))
        assert expect_closed(node) == (1008, f"authentication failed: {reason}")
        assert "details" not in error
    finally:
        node.close()


def accepted(pool: NodePool, token: str, name: str, room: str | None = None, **extra: Any) -> Node:
    """A node that registered with ``token`` (and joined ``room``)."""
    node = pool(name, room=room, token=token, **extra)
    assert node.node_id is not None
    return node


def stats(gateway: GatewayProcess, watch: SecretWatch, token: str | None = None,
          header: str | None = None) -> tuple[int, dict[str, str], dict[str, Any]]:
    if token is not None:
        header = f"Bearer {token}"
    status, headers, body = http_get(gateway, "/stats", {"Authorization": header} if header else None)
    watch.messages.append(body)
    assert headers["Content-Type"] == "application/json"
    return status, headers, json.loads(body)


# --- shared token -----------------------------------------------------------------


@pytest.fixture(scope="module")
def token_gateway(watch: SecretWatch) -> Iterator[GatewayProcess]:
    process = start_gateway("--auth", "--token", SHARED, "--name", "my-gw", "--log-level", "debug")
    watch.gateways.append(process)
    try:
        yield process
    finally:
        process.stop()


def test_shared_token_accepted_wrong_or_missing_refused(
    token_gateway: GatewayProcess, watch: SecretWatch, tmp_path: Path
) -> None:
    pool = NodePool(token_gateway)
    try:
        a = accepted(pool, SHARED, "a", room="safe")
        b = accepted(pool, SHARED, "b", room="safe")
        a.recv_type("presence")
        signed = KeyRing.open(tmp_path / "unused.json", now_clock(), create=True)
        watch.ring(tmp_path / "unused.json")
        jwt_token = watch.token(signed.sign("x", 60))
        for token, reason in (
            ("wrong", "token not accepted"),
            (SHARED + "x", "token not accepted"),
            (SHARED.upper(), "token not accepted"),
            (SHARED[:-1], "token not accepted"),
            (jwt_token, "token not accepted"),
            (_ABSENT, "token required"),
            ("", "token required"),
            (None, "token required"),
            (12345, "token required"),
        ):
            refused(token_gateway, watch, token, reason)
        assert health(token_gateway)["stats"]["totalNodes"] == 2
        assert_delivers(a, b, "safe")
        assert_delivers(b, a, "safe")
    finally:
        pool.close_all()


def test_stats_needs_the_token(token_gateway: GatewayProcess, watch: SecretWatch) -> None:
    for header, reason in ((None, "token required"), ("Basic " + SHARED, "token required"),
                           ("Bearer", "token required"), ("Bearer wrong", "token not accepted")):
        status, headers, body = stats(token_gateway, watch, header=header)
        assert status == 401
        assert body == {"error": {"code": "AUTH_FAILED", "message": f"authentication failed: {reason}"}}
        assert headers["WWW-Authenticate"] == 'Bearer realm="wingman-gateway"'

    pool = NodePool(token_gateway)
    try:
        node = accepted(pool, SHARED, "lister", room="listed")
        node.request("join_group", {"groupName": "second", "createIfNotExists": True, "description": "two"})
        status, _, body = stats(token_gateway, watch, SHARED)
        assert status == 200
        [entry] = [n for n in body["nodes"]["nodes"] if n["id"] == node.node_id]
        assert set(entry) == {"id", "name", "capabilities", "rooms", "transport", "connectedAt", "lastSeen"}
        assert (entry["name"], entry["capabilities"], entry["transport"]) == ("lister", [], "websocket")
        assert entry["rooms"] == ["listed", "second"]
        assert type(entry["connectedAt"]) is int and entry["connectedAt"] <= entry["lastSeen"]
        assert body["nodes"]["totalNodes"] == len(body["nodes"]["nodes"])
        rooms = {g["name"]: g for g in body["groups"]["groups"]}
        second = rooms["second"]
        assert set(second) == {"id", "name", "description", "strategy", "memberCount", "createdAt", "createdBy"}
        assert (second["description"], second["memberCount"], second["createdBy"]) == ("two", 1, node.node_id)
        assert type(second["createdAt"]) is int and len(second["id"]) == 16
        assert body["gateway"]["name"] == "my-gw"
    finally:
        pool.close_all()


def test_health_is_public_with_exact_keys(token_gateway: GatewayProcess) -> None:
    status, headers, text = http_get(token_gateway, "/health")
    assert status == 200 and headers["Content-Type"] == "application/json"
    body = json.loads(text)
    assert set(body) == {"status", "service", "version", "name", "auth", "stats", "timestamp"}
    assert (body["status"], body["service"], body["name"]) == ("healthy", "wingman-gateway", "my-gw")
    assert body["auth"] == "required"
    assert body["version"] == wingman_gateway.__version__
    report = body["stats"]
    assert set(report) == {"uptime", "totalNodes", "totalGroups", "messagesProcessed", "startedAt"}
    assert all(type(value) is int for value in report.values())
    assert type(body["timestamp"]) is int
    assert report["startedAt"] <= body["timestamp"] and report["uptime"] >= 0


# --- signed tokens -------------------------------------------------------------------


@pytest.fixture(scope="module")
def ring_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ring") / "keyring.json"
    KeyRing.open(path, now_clock(), create=True)
    return path


@pytest.fixture(scope="module")
def ring_gateway(ring_path: Path, watch: SecretWatch) -> Iterator[GatewayProcess]:
    watch.ring(ring_path)
    process = start_gateway("--auth", "--keyring", str(ring_path), "--log-level", "debug")
    watch.gateways.append(process)
    try:
        yield process
    finally:
        process.stop()


def tampered(token: str, **claims: Any) -> str:
    """The token with changed claims and its old signature."""
    header, body, signature = token.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    decoded.update(claims)
    body = base64.urlsafe_b64encode(json.dumps(decoded).encode()).rstrip(b"=").decode()
    return f"{header}.{body}.{signature}"


def forged_ring(directory: Path, key_id: str) -> KeyRing:
    """A key ring with the same key id but another secret."""
    path = directory / "forged.json"
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    path.write_text(json.dumps({"version": 1, "active": key_id,
                                "keys": [{"id": key_id, "created": time.time(), "secret": secret}]}))
    return KeyRing.open(path, now_clock())


def test_signed_tokens_accepted_and_bad_ones_refused(
    ring_gateway: GatewayProcess, ring_path: Path, watch: SecretWatch, tmp_path: Path
) -> None:
    ring = KeyRing.open(ring_path, now_clock())
    pool = NodePool(ring_gateway)
    try:
        a = accepted(pool, watch.token(ring.sign("alice", 3600)), "alice", room="signed")
        b = accepted(pool, watch.token(ring.sign("bob", None)), "bob", room="signed")
        a.recv_type("presence")

        good = watch.token(ring.sign("carol", 3600))
        header, body, signature = good.split(".")
        flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
        other = KeyRing.open(tmp_path / "other.json", now_clock(), create=True)
        watch.ring(tmp_path / "other.json")
        forged = forged_ring(tmp_path, ring.keys()[0].id)
        watch.ring(tmp_path / "forged.json")
        expired = KeyRing.open(ring_path, now_clock(-7200)).sign("late", 60)
        for token, reason in (
            (expired, "token expired"),
            (tampered(good, sub="mallory"), "token signature invalid"),
            (tampered(good, exp=time.time() + 10**6), "token signature invalid"),
            (f"{header}.{body}.{flipped}", "token signature invalid"),
            (other.sign("alice", 3600), "unknown signing key"),
            (forged.sign("alice", 3600), "token signature invalid"),
            (f"{header}.{body}.", "token signature invalid"),
            ("a.b.c", "token malformed"),
            ("not-a-token", "token not accepted"),
            (_ABSENT, "token required"),
        ):
            if isinstance(token, str):
                watch.token(token)
            refused(ring_gateway, watch, token, reason)
        assert health(ring_gateway)["stats"]["totalNodes"] == 2
        assert_delivers(a, b, "signed")
        assert_delivers(b, a, "signed")
    finally:
        pool.close_all()


def test_room_scoped_token_joins_only_its_rooms(
    ring_gateway: GatewayProcess, ring_path: Path, watch: SecretWatch
) -> None:
    ring = KeyRing.open(ring_path, now_clock())
    pool = NodePool(ring_gateway)
    try:
        free = accepted(pool, watch.token(ring.sign("free", 3600)), "free", room="alpha")
        gamma = free.join("gamma")["payload"]["groupId"]
        scoped = accepted(pool, watch.token(ring.sign("scoped", 3600, rooms=["alpha", "delta"])), "scoped")
        assert scoped.join("alpha")["payload"]["created"] is False
        assert scoped.join("delta")["payload"]["created"] is True
        reply = scoped.join("beta")
        expect_error(reply, "FORBIDDEN", "your token does not allow room 'beta'")
        watch.messages.append(reply["payload"]["message"])
        reply = scoped.request("join_group", {"groupId": gamma})
        expect_error(reply, "FORBIDDEN", "your token does not allow room 'gamma'")
        assert health(ring_gateway)["stats"]["totalGroups"] == 3
        assert_usable(scoped)
        assert_delivers(scoped, free, "alpha")
        assert_delivers(free, scoped, "alpha")
    finally:
        pool.close_all()


def test_stats_accepts_a_signed_bearer_token(
    ring_gateway: GatewayProcess, ring_path: Path, watch: SecretWatch
) -> None:
    ring = KeyRing.open(ring_path, now_clock())
    status, _, body = stats(ring_gateway, watch, watch.token(ring.sign("ops", 60)))
    assert status == 200 and set(body) == {"gateway", "nodes", "groups", "timestamp"}
    expired = watch.token(KeyRing.open(ring_path, now_clock(-7200)).sign("ops", 60))
    status, _, body = stats(ring_gateway, watch, expired)
    assert status == 401
    assert body == {"error": {"code": "AUTH_FAILED", "message": "authentication failed: token expired"}}


# --- both at once, and rotation without restart -----------------------------------------


@pytest.fixture
def mixed(tmp_path: Path, watch: SecretWatch) -> Iterator[tuple[GatewayProcess, Path]]:
    path = tmp_path / "mixed.json"
    KeyRing.open(path, now_clock(), create=True)
    watch.ring(path)
    with running_gateway("--auth", "--token", SHARED, "--keyring", str(path), "--log-level", "debug") as process:
        watch.gateways.append(process)
        yield process, path


def test_mixed_mode_accepts_shared_and_signed_tokens(
    mixed: tuple[GatewayProcess, Path], watch: SecretWatch
) -> None:
    gateway, path = mixed
    ring = KeyRing.open(path, now_clock())
    pool = NodePool(gateway)
    try:
        a = accepted(pool, SHARED, "shared", room="both")
        b = accepted(pool, watch.token(ring.sign("signed", 3600)), "signed", room="both")
        a.recv_type("presence")
        refused(gateway, watch, "wrong", "token not accepted")
        refused(gateway, watch, watch.token(tampered(ring.sign("x", 60), sub="y")), "token signature invalid")
        assert_delivers(a, b, "both")
        for bearer in (SHARED, watch.token(ring.sign("ops", 60))):
            assert stats(gateway, watch, bearer)[0] == 200
    finally:
        pool.close_all()


def reload_keys(gateway: GatewayProcess) -> None:
    """SIGHUP the gateway we started and wait until it has re-read the key ring."""
    before = gateway.log.count("key ring reloaded")
    os.kill(gateway.proc.pid, signal.SIGHUP)
    wait_until(lambda: gateway.log.count("key ring reloaded") > before, 10, "the key ring reload")
    assert gateway.proc.poll() is None


def test_key_rotation_without_restart(mixed: tuple[GatewayProcess, Path], watch: SecretWatch) -> None:
    gateway, path = mixed
    ring = KeyRing.open(path, now_clock())
    old_key = ring.keys()[0].id
    old_token = watch.token(ring.sign("old", 3600))
    pool = NodePool(gateway)
    try:
        anchor = accepted(pool, old_token, "anchor", room="keys")
        new_key = ring.rotate()
        watch.ring(path)
        new_token = watch.token(ring.sign("new", 3600))
        reload_keys(gateway)
        accepted(pool, new_token, "new-key")
        accepted(pool, old_token, "old-key")
        accepted(pool, SHARED, "shared")

        ring.retire(old_key)
        assert [k.id for k in ring.keys()] == [new_key]
        reload_keys(gateway)
        refused(gateway, watch, old_token, "unknown signing key")
        # Nodes whose token the retired key signed are closed at the reload.
        reason = "the key that signed this token was retired"
        expect_error(anchor.recv_type("error"), "AUTH_FAILED", reason)
        assert expect_closed(anchor) == (1008, reason)
        keeper = accepted(pool, SHARED, "keeper", room="keys")
        late = accepted(pool, new_token, "new-key-again", room="keys")
        keeper.recv_type("presence")
        assert_delivers(late, keeper, "keys")
        assert gateway.proc.poll() is None
    finally:
        pool.close_all()


# --- secrets never leak (runs last in this module) ---------------------------------------


def test_no_secret_in_logs_errors_or_stats(
    token_gateway: GatewayProcess, ring_gateway: GatewayProcess, ring_path: Path, watch: SecretWatch
) -> None:
    ring = KeyRing.open(ring_path, now_clock())
    refused(token_gateway, watch, watch.token(ring.sign("leak", 60)), "token not accepted")
    refused(ring_gateway, watch, watch.token(tampered(ring.sign("leak", 60), sub="z")),
            "token signature invalid")
    pool = NodePool(ring_gateway)
    try:
        accepted(pool, watch.token(ring.sign("visible", 3600)), "visible", room="open",
                 metadata={"note": "hello"})
        for gateway, bearer in ((token_gateway, SHARED), (ring_gateway, watch.token(ring.sign("s", 60)))):
            stats(gateway, watch, bearer)
            stats(gateway, watch, header="Bearer " + bearer + "x")
    finally:
        pool.close_all()
    assert len(watch.secrets) > 5 and watch.messages
    shown = [*watch.messages, *(gateway.log for gateway in watch.gateways)]
    for text in shown:
        for secret in watch.secrets:
            assert secret not in text, "a secret appeared in gateway output"
    # The logs are not silent about refusals: reasons are there, secrets are not.
    assert "token signature invalid" in ring_gateway.log
