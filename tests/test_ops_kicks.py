"""Kicking a node and closing a room through the server API and the ``wingman`` command:
what a WebSocket, an SSH line and an HTTP bridge node each get, and what their rooms see."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from harness.bridgekit import Reply
from harness.cli_support import wingman
from harness.opskit import ADMIN_TOKEN, NODE_TOKEN, OpsGateway, OpsSite, admin_id, bridge_member
from harness.sshkit import SSHLineNode
from harness.support import Node, NodePool, expect_closed


def test_kick_closes_the_node_and_tells_its_rooms(ops_site: OpsSite, ops_nodes: NodePool) -> None:
    ops = ops_site.ops
    stayer = ops_nodes("stayer", room="kicks", token=NODE_TOKEN)
    target = ops_nodes("target", room="kicks", token=NODE_TOKEN)
    stayer.recv_type("presence")
    reply = ops.api("POST", f"nodes/{target.node_id}/disconnect", {"reason": "spamming"})
    assert reply.status == 200 and reply.body == {
        "nodeId": target.node_id, "name": "target", "disconnected": True}
    assert expect_closed(target) == (1008, "spamming")
    presence = stayer.recv_type("presence")
    assert presence["payload"]["event"] == "left" and presence["payload"]["reason"] == "spamming"
    assert presence["payload"]["nodeId"] == target.node_id
    assert ops.api("GET", f"nodes/{target.node_id}").status == 404
    ops.audited("admin_disconnect", nodeId=target.node_id, name="target", reason="spamming",
                admin=admin_id())
    # Without a reason, the default one.
    other = ops_nodes("other", room="kicks", token=NODE_TOKEN)
    assert ops.api("POST", f"nodes/{other.node_id}/disconnect").status == 200
    assert expect_closed(other) == (1008, "disconnected by the gateway's administrator")


KICKS = ("api", "cli")


def _kick(ops: OpsGateway, node_id: str, reason: str, how: str, home: Path) -> None:
    """Disconnect a node with ``reason``, through the server API or the ``wingman`` command."""
    if how == "api":
        reply = ops.api("POST", f"nodes/{node_id}/disconnect", {"reason": reason})
        assert reply.status == 200 and reply.body["disconnected"] is True, reply
    else:
        (home / "admin-token").write_text(ADMIN_TOKEN + "\n")
        result = wingman(home, "gateway", "kick", node_id, "--reason", reason,
                         "--url", f"127.0.0.1:{ops.port}")
        assert result.returncode == 0 and f"disconnected {node_id}" in result.stdout, result
    ops.audited("admin_disconnect", nodeId=node_id, reason=reason, admin=admin_id())


def _left(stayer: Node, node_id: str | None, reason: str) -> None:
    """``stayer`` is told ``node_id`` left its room for ``reason``."""
    for _ in range(5):
        presence = stayer.recv_type("presence")
        if presence["payload"]["event"] == "left":
            break
    assert presence["payload"]["event"] == "left" and presence["payload"]["nodeId"] == node_id
    assert presence["payload"]["reason"] == reason


@pytest.mark.parametrize("how", KICKS)
def test_kick_gives_an_ssh_line_node_a_close_line(
    ops_site: OpsSite, ops_nodes: NodePool, how: str, tmp_path: Path
) -> None:
    ops = ops_site.ops
    stayer = ops_nodes("stayer", room=f"ssh-kick-{how}", token=NODE_TOKEN)
    line = SSHLineNode(ops_site.ssh_port, ops_site.keys["alice"].path)
    try:
        line.register("line")
        assert line.join(f"ssh-kick-{how}")["type"] == "ack"
        _kick(ops, str(line.node_id), f"kicked by {how}", how, tmp_path)
        last = line.recv_type("close")
        assert last["payload"] == {"code": 1008, "reason": f"kicked by {how}"}
        assert line.exit_status() == 1  # the exit status of a close that is not normal
        assert f"wingman-gateway: kicked by {how}".encode() in bytes(line.stderr)
    finally:
        line.stop()
    _left(stayer, line.node_id, f"kicked by {how}")
    assert ops.api("GET", f"nodes/{line.node_id}").status == 404
    assert stayer.request("ping")["type"] == "pong"


@pytest.mark.parametrize("how", KICKS)
def test_kick_tells_a_bridge_node_where_it_reads(
    ops_site: OpsSite, ops_nodes: NodePool, how: str, tmp_path: Path
) -> None:
    ops = ops_site.ops
    room = f"bridge-kick-{how}"
    stayer = ops_nodes("stayer", room=room, token=NODE_TOKEN)
    polling, streaming, idle = (bridge_member(ops, room) for _ in range(3))
    polling.drain(kinds=(), timeout=0.2)
    answers: list[Reply] = []
    poller = threading.Thread(target=lambda: answers.append(polling.poll(timeout=20)))
    poller.start()
    stream = streaming.stream()
    try:
        time.sleep(0.5)  # the poll reaches the gateway and is held (nothing is queued)
        # A held poll's answer carries the close.
        _kick(ops, str(polling.node_id), "poll kicked", how, tmp_path)
        poller.join(10)
        assert answers and answers[0].status == 200
        assert answers[0].body["closed"] == {"code": 1008, "reason": "poll kicked"}
        # A stream ends with a close event.
        _kick(ops, str(streaming.node_id), "stream kicked", how, tmp_path)
        for _ in range(20):
            event = stream.next_event()
            if event["event"] == "close":
                break
        assert event["event"] == "close"
        assert json.loads(event["data"]) == {"code": 1008, "reason": "stream kicked"}
    finally:
        stream.close()
        poller.join(10)
    # A session that was not being read learns it at its next request: it is gone.
    _kick(ops, str(idle.node_id), "idle kicked", how, tmp_path)
    reply = idle.poll(timeout=0)
    assert reply.status == 401 and reply.code == "AUTH_FAILED"
    assert reply.body["payload"]["message"] == "unknown or expired bridge session"
    for node, reason in ((polling, "poll kicked"), (streaming, "stream kicked"),
                         (idle, "idle kicked")):
        _left(stayer, node.node_id, reason)
        assert ops.api("GET", f"nodes/{node.node_id}").status == 404
    assert stayer.request("ping")["type"] == "pong"


def test_closing_a_room_tells_every_member_and_keeps_them_connected(
    ops_site: OpsSite, ops_nodes: NodePool
) -> None:
    ops = ops_site.ops
    members = [ops_nodes(f"m{i}", room="closing", token=NODE_TOKEN) for i in range(3)]
    http = bridge_member(ops, "closing")
    reply = ops.api("POST", "rooms/closing/close", {"reason": "end of sprint"})
    assert reply.status == 200 and reply.body["members"] == 4 and reply.body["closed"]
    for node in members:
        for _ in range(5):
            notice = node.recv_type("presence")
            if notice["payload"]["event"] == "closed":
                break
        assert notice["payload"] == {"event": "closed", "groupId": reply.body["groupId"],
                                     "groupName": "closing", "memberCount": 0,
                                     "reason": "end of sprint"}
    # The bridge member joined last: the closed notice is the one presence it was sent.
    [closed] = http.drain(kinds=("presence",), timeout=0.5)
    assert closed["nodeId"] is None and closed["groupId"] == reply.body["groupId"]
    assert closed["payload"] == notice["payload"]
    assert http.broadcast("closing", "still here?").code == "GROUP_NOT_FOUND"
    assert ops.api("GET", "rooms/closing/members").status == 404
    assert all(r["name"] != "closing" for r in ops.api("GET", "rooms").body["groups"])
    # The members are still connected and may make the room again.
    assert members[0].join("closing")["payload"]["created"] is True
    ops.audited("admin_close", room="closing", members=4, reason="end of sprint")
