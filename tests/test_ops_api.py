"""The server API, its CLI and the audit log, against a real gateway with every transport."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import jwt
import pytest
from twisted.internet.task import Clock

from harness.bridgekit import BridgeNode, call
from harness.cli_support import wingman
from harness.opskit import (
    ADMIN_TOKEN,
    NODE_TOKEN,
    SITE_NAME,
    OpsSite,
    admin_id,
    bridge_member,
    value,
)
from harness.sshkit import SSHLineNode, UserKey
from harness.support import (
    Node,
    NodePool,
    expect_closed,
    expect_error,
    expect_silence,
    wait_until,
)
from wingman_gateway.auth import KeyRing
from wingman_gateway.transports.ssh.keys import fingerprint

WRONG_TOKEN = "wrong-token-5a0d6e"


CALLS = [
    ("POST", "publish", {"room": "r", "message": 1}),
    ("POST", "broadcast", {"rooms": ["r"], "message": 1}),
    ("GET", "rooms", None),
    ("GET", "rooms/r/members", None),
    ("GET", "nodes/abc", None),
    ("POST", "nodes/abc/disconnect", {}),
    ("POST", "rooms/r/close", {}),
]


@pytest.mark.parametrize("method,path,body", CALLS)
def test_every_call_needs_the_admin_credential(
    ops_site: OpsSite, method: str, path: str, body: object
) -> None:
    ops = ops_site.ops
    reply = ops.api(method, path, body, token=None)
    assert reply.status == 401, reply
    assert reply.body == {"error": {"code": "AUTH_FAILED", "message":
                                    "this endpoint needs the admin credential (Authorization: Bearer)"}}
    assert reply.headers["www-authenticate"] == 'Bearer realm="wingman-gateway"'
    for wrong in ("wrong", NODE_TOKEN, ADMIN_TOKEN[:-1]):
        reply = ops.api(method, path, body, token=wrong)
        assert reply.status == 403, reply
        assert reply.body["error"]["code"] == "FORBIDDEN"
    # With the credential the call is answered (here: the room or node does not exist).
    reply = ops.api(method, path, body)
    assert reply.status in (200, 404), reply
    assert reply.headers["content-type"] == "application/json"
    ops.audited("api_call", method=method, path=f"/api/{path}", status=401, admin=None)
    ops.audited("api_call", method=method, path=f"/api/{path}", status=reply.status,
                admin=admin_id())


def test_stats_takes_the_admin_credential_or_a_node_token(ops_site: OpsSite) -> None:
    port = ops_site.ops.port
    assert call(port, "GET", "/stats").status == 401
    for token in (ADMIN_TOKEN, NODE_TOKEN):
        reply = call(port, "GET", "/stats", headers={"Authorization": f"Bearer {token}"})
        assert reply.status == 200 and set(reply.body) == {"gateway", "nodes", "groups", "timestamp"}
    reply = call(port, "GET", "/stats", headers={"Authorization": "Bearer wrong"})
    assert reply.status == 401 and reply.body["error"]["message"] == "authentication failed: token not accepted"


def test_publish_reaches_websocket_bridge_and_ssh_members(
    ops_site: OpsSite, ops_nodes: NodePool
) -> None:
    ops = ops_site.ops
    web = ops_nodes("web", room="everyone", token=NODE_TOKEN)
    http = bridge_member(ops, "everyone")
    line = SSHLineNode(ops_site.ssh_port, ops_site.keys["alice"].path)
    try:
        line.register("line")
        assert line.join("everyone")["type"] == "ack"
        message = {"type": "notice", "text": "maintenance at 5", "n": [1, 2.5, None]}
        reply = ops.api("POST", "publish", {"room": "everyone", "message": message})
        assert reply.status == 200, reply
        assert reply.body["recipients"] == 3 and reply.body["groupName"] == "everyone"
        seen = [web.recv_type("broadcast"), http.next_of("broadcast"), line.recv_type("broadcast")]
        for envelope in seen:
            assert envelope["fromNodeId"] is None and envelope["nodeId"] is None
            assert envelope["fromName"] == SITE_NAME
            assert envelope["groupName"] == "everyone" and envelope["payload"] == message

        # Several rooms at once; a missing room sends nothing anywhere.
        assert web.join("second")["type"] == "ack"
        reply = ops.api("POST", "broadcast", {"rooms": ["everyone", "second"], "message": "both"})
        assert reply.status == 200 and reply.body["recipients"] == 4
        assert [r["recipients"] for r in reply.body["rooms"]] == [3, 1]
        assert web.recv_type("broadcast")["payload"] == "both"
        assert web.recv_type("broadcast")["groupName"] == "second"
        assert http.next_of("broadcast")["payload"] == "both"
        assert line.recv_type("broadcast")["payload"] == "both"
        reply = ops.api("POST", "broadcast", {"rooms": ["everyone", "nowhere"], "message": "x"})
        assert reply.status == 404 and reply.body["error"]["code"] == "GROUP_NOT_FOUND"
        expect_silence(web, 0.5)
        assert http.drain() == []
    finally:
        line.stop()


def test_bad_requests_get_protocol_errors_and_change_nothing(
    ops_site: OpsSite, ops_nodes: NodePool
) -> None:
    ops = ops_site.ops
    member = ops_nodes("member", room="steady", token=NODE_TOKEN)
    cases = [
        ("POST", "publish", "{not json", 400, "INVALID_MESSAGE"),
        ("POST", "publish", "[1]", 400, "INVALID_MESSAGE"),
        ("POST", "publish", '{"room": "steady", "message": NaN}', 400, "INVALID_MESSAGE"),
        ("POST", "publish", {"room": "steady"}, 400, "INVALID_REQUEST"),
        ("POST", "publish", {"message": 1}, 400, "INVALID_REQUEST"),
        ("POST", "publish", {"room": "absent", "message": 1}, 404, "GROUP_NOT_FOUND"),
        ("POST", "broadcast", {"rooms": [], "message": 1}, 400, "INVALID_REQUEST"),
        ("POST", "nodes/none/disconnect", {}, 404, "NODE_NOT_FOUND"),
        ("POST", f"nodes/{member.node_id}/disconnect", {"reason": "a\nb"}, 400, "INVALID_REQUEST"),
        ("GET", "rooms/absent/members", None, 404, "GROUP_NOT_FOUND"),
        ("GET", "elsewhere", None, 404, "INVALID_REQUEST"),
        ("GET", "publish", None, 405, "INVALID_REQUEST"),
    ]
    for method, path, body, status, code in cases:
        reply = ops.api(method, path, body)
        assert (reply.status, reply.body["error"]["code"]) == (status, code), (path, body, reply)
    assert ops.api("GET", "publish").headers["allow"] == "POST"
    big = {"room": "steady", "message": "x" * (1024 * 1024)}
    assert ops.api("POST", "publish", big).status == 413
    expect_silence(member, 0.3)
    assert member.request("ping")["type"] == "pong"


def test_rooms_members_and_nodes_are_listed(ops_site: OpsSite, ops_nodes: NodePool) -> None:
    ops = ops_site.ops
    first = ops_nodes("first", room="listed", token=NODE_TOKEN)
    second = ops_nodes("second", room="listed", token=NODE_TOKEN)
    rooms = ops.api("GET", "rooms").body
    [room] = [r for r in rooms["groups"] if r["name"] == "listed"]
    assert room["memberCount"] == 2
    for name in ("listed", room["id"]):  # by name or by id
        members = ops.api("GET", f"rooms/{name}/members").body
        assert [m["name"] for m in members["members"]] == ["first", "second"]
        assert {m["transport"] for m in members["members"]} == {"websocket"}
    node = ops.api("GET", f"nodes/{second.node_id}").body
    assert node["id"] == second.node_id and node["rooms"] == ["listed"]
    assert "127.0.0.1:" in node["peer"] and "token" not in json.dumps(node).lower()
    assert first.node_id != second.node_id


def test_the_cli_speaks_the_api(ops_site: OpsSite, ops_nodes: NodePool, tmp_path: Path) -> None:
    ops = ops_site.ops
    (tmp_path / "admin-token").write_text(ADMIN_TOKEN + "\n")
    url = f"127.0.0.1:{ops.port}"
    member = ops_nodes("cli-member", room="cli-room", token=NODE_TOKEN)
    result = wingman(tmp_path, "gateway", "rooms", "--url", url)
    assert result.returncode == 0, result.stderr
    assert "cli-room  (1 members" in result.stdout
    result = wingman(tmp_path, "gateway", "who", "cli-room", "--url", url)
    assert result.returncode == 0 and f"{member.node_id}  cli-member  websocket" in result.stdout
    result = wingman(tmp_path, "gateway", "publish", "cli-room", '{"hello": "cli"}', "--url", url)
    assert result.returncode == 0 and result.stdout.strip() == "published to 1 members of cli-room"
    assert member.recv_type("broadcast")["payload"] == {"hello": "cli"}
    result = wingman(tmp_path, "gateway", "publish", "cli-room", "not json", "--url", url)
    assert result.returncode == 1 and "not JSON" in result.stdout
    result = wingman(tmp_path, "gateway", "who", "absent", "--url", url, "--json")
    assert result.returncode == 1 and "HTTP 404 GROUP_NOT_FOUND" in result.stdout
    (tmp_path / "admin-token").write_text("wrong\n")
    result = wingman(tmp_path, "gateway", "rooms", "--url", url)
    assert result.returncode == 1 and "HTTP 403 FORBIDDEN" in result.stdout
    (tmp_path / "admin-token").write_text(ADMIN_TOKEN + "\n")
    result = wingman(tmp_path, "gateway", "kick", str(member.node_id), "--reason", "bye", "--url", url)
    assert result.returncode == 0 and f"disconnected {member.node_id} (cli-member)" in result.stdout
    assert expect_closed(member) == (1008, "bye")


# --- the audit log -----------------------------------------------------------------------


def test_audit_log_records_each_event_and_no_secret(ops_site: OpsSite, ops_nodes: NodePool) -> None:
    """Self-contained: every event it checks for, it causes itself."""
    ops = ops_site.ops
    before, earlier = ops.scrape(), len(ops.audit())
    ring = KeyRing.open(ops_site.ring, _now())
    signed = ring.sign("carol", 600)
    key_id = ring.keys()[0].id
    ghost = jwt.encode({"sub": "ghost", "iss": "wingman-gateway"}, "g" * 32, algorithm="HS256",
                       headers={"kid": "ghost-key"})
    secrets = [*ops_site.secrets, signed, ghost, "g" * 32, WRONG_TOKEN]
    shared = ops_nodes("shared-node", token=NODE_TOKEN)
    ops.audited("register", nodeId=shared.node_id, credential="shared", transport="websocket",
                keyId=None)
    carol = ops_nodes("carol-node", token=signed)
    entry = ops.audited("register", nodeId=carol.node_id, credential="signed")
    assert entry["keyId"] == key_id and entry["subject"] == "carol"

    # Refused registrations: the credential kind and the key id the token names, never the token.
    refusals = [
        (None, "token required", "none", None),
        (WRONG_TOKEN, "token not accepted", "shared", None),
        (signed[:-3] + "abc", "token signature invalid", "signed", key_id),
        (ghost, "unknown signing key", "signed", "ghost-key"),
    ]
    for token, reason, credential, kid in refusals:
        refused = Node(ops.process.url)
        expect_error(refused.register("bad", **({} if token is None else {"token": token})),
                     "AUTH_FAILED")
        expect_closed(refused)
        ops.audited("register_refused", reason=reason, credential=credential, keyId=kid,
                    transport="websocket")
    assert BridgeNode(ops.port).register("bad-http", token=WRONG_TOKEN).status == 401
    ops.audited("register_refused", reason="token not accepted", credential="shared", keyId=None,
                transport="http")

    # A server-API call and a kick, by the administrator.
    victim = ops_nodes("victim", token=NODE_TOKEN)
    assert ops.api("GET", "rooms").status == 200
    assert ops.api("GET", "rooms", token=None).status == 401
    ops.audited("api_call", method="GET", path="/api/rooms", status=200, admin=admin_id())
    ops.audited("api_call", method="GET", path="/api/rooms", status=401, admin=None)
    reply = ops.api("POST", f"nodes/{victim.node_id}/disconnect", {"reason": "audit check"})
    assert reply.status == 200
    assert expect_closed(victim) == (1008, "audit check")
    ops.audited("admin_disconnect", nodeId=victim.node_id, name="victim", reason="audit check",
                admin=admin_id())

    line = SSHLineNode(ops_site.ssh_port, ops_site.keys["alice"].path)
    try:
        node_id = line.register("line")["payload"]["nodeId"]
    finally:
        line.stop()
    fingerprint = _fingerprint(ops_site.keys["alice"])
    ops.audited("ssh_login", login="alice", fingerprint=fingerprint)
    entry = ops.audited("register", nodeId=node_id, credential="ssh-key")
    assert entry["keyId"] == fingerprint and entry["source"].startswith("alice@127.0.0.1:")
    assert ops_site.ssh("-o", "BatchMode=yes", "alice@127.0.0.1", key="stranger").returncode != 0
    ops.audited("ssh_refused", login="alice", reason="wrong key",
                fingerprint=_fingerprint(ops_site.keys["stranger"]))
    assert ops_site.ssh("-W", "127.0.0.1:9", "alice@127.0.0.1").returncode != 0
    ops.audited("forward_refused", login="alice", target="127.0.0.1:9", fingerprint=fingerprint)

    # SIGHUP: the key ring is reloaded (audited), then the log is reopened (logrotate).
    rotated = ops.audit_path.with_suffix(".log.1")
    os.rename(ops.audit_path, rotated)
    os.kill(ops.process.pid, signal.SIGHUP)
    wait_until(ops.audit_path.exists, 10, "the audit log to be reopened")
    assert any(json.loads(l)["event"] == "keyring_reload" for l in rotated.read_text().splitlines())
    after = ops_nodes("after-rotation", token=NODE_TOKEN)
    ops.audited("register", nodeId=after.node_id)

    text = rotated.read_text() + ops.audit_path.read_text()
    events = {json.loads(line)["event"] for line in text.splitlines()}
    assert {"register", "register_refused", "keyring_reload", "ssh_login", "ssh_refused",
            "forward_refused", "api_call", "admin_disconnect"} <= events
    for line_text in text.splitlines():
        entry = json.loads(line_text)
        assert {"time", "event", "source"} <= set(entry) and entry["time"].endswith("Z")
    secrets += [key["secret"] for key in json.loads(ops_site.ring.read_text())["keys"]]
    secrets += [_private_body(key) for key in ops_site.keys.values()]
    for secret in secrets:
        assert secret and secret not in text, "a secret is in the audit log"
    # Nor any piece of a token: its signature, its claims.
    for token in (signed, ghost):
        for part in token.split("."):
            assert part not in text, "a part of a token is in the audit log"
    assert os.stat(ops.audit_path).st_mode & 0o077 == 0

    # The same events, counted (what this test did, exactly).
    series = ops.scrape()

    def grew(name: str, **labels: str) -> float:
        return value(series, name, **labels) - value(before, name, **labels)

    assert grew("wingman_gateway_ssh_logins_total", result="accepted") == 2
    # Only the stranger's key was refused: alice's logins, whose client first asks
    # whether her key would do, are no refusals.
    entries = [json.loads(line) for line in text.splitlines()][earlier:]
    ssh_refusals = [e for e in entries if e["event"] == "ssh_refused"]
    assert ssh_refusals and {e["fingerprint"] for e in ssh_refusals} == {
        _fingerprint(ops_site.keys["stranger"])}
    assert grew("wingman_gateway_ssh_logins_total", result="refused") == len(ssh_refusals)
    assert grew("wingman_gateway_ssh_forwards_refused_total") == 1
    assert grew("wingman_gateway_registrations_total", credential="ssh_key") == 1
    assert grew("wingman_gateway_registrations_total", credential="signed") == 1
    assert grew("wingman_gateway_registrations_total", credential="shared") == 3
    for reason, count in (("token_required", 1), ("token_not_accepted", 2),
                          ("token_signature_invalid", 1), ("unknown_signing_key", 1)):
        assert grew("wingman_gateway_auth_failures_total", reason=reason) == count, reason
    assert grew("wingman_gateway_keyring_reloads_total", result="ok") == 1
    assert grew("wingman_gateway_api_requests_total", status="2xx") == 2
    assert grew("wingman_gateway_api_requests_total", status="4xx") == 1


def _now() -> Clock:
    """A clock at the present moment, for signing tokens as the gateway's key ring would."""
    clock = Clock()
    clock.advance(time.time())
    return clock


def _fingerprint(key: UserKey) -> str:
    return fingerprint(key.key)


def _private_body(key: UserKey) -> str:
    lines = key.path.read_text().splitlines()
    return "".join(lines[1:-1])[:40]
