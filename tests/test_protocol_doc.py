"""docs/protocol.rst is true: its examples are replayed against real gateways.

Each section's requests are sent by WebSocket nodes (the independent
``websockets`` library), and every reply and delivered message must be the
documented one; the curl session runs with the real ``curl``. Examples that
need conditions of their own (an oversized message, the heartbeat, a full
bridge queue) are checked one by one.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any, Iterator

import docutils.core
import pytest

from harness.background import stop_all
from harness.bridgekit import BridgeNode
from harness.clusterkit import RedisServer, cluster_stats, health_of, start_member, wait_formed
from harness.docexamples import DOC, Bindings, Page, Section, read_page
from harness.sshkit import SSHLineNode, UserKey, write_authorized_keys
from harness.support import (
    GatewayProcess, Node, expect_closed, expect_silence, reply_to, running_gateway, wait_until,
)
from wingman_gateway import errors
from wingman_gateway.cli.render import AGENT_EVENTS, Renderer
from wingman_gateway.client import Message

PAGE: Page = read_page()
NODE_SECTIONS = [s for s in PAGE.sections if s.steps]
CURL_SECTIONS = [s for s in PAGE.sections if s.commands]
# How the gateway closes a connection after these replies.
CLOSES_AFTER = {"AUTH_FAILED": 1008, "MAX_NODES_REACHED": 1013, "unregister": 1000}
# Never send loopback traffic through a proxy from the environment.
NO_PROXY_ENV = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}


def example(predicate: Any) -> dict[str, Any]:
    """The one unlabelled example the predicate picks."""
    [found] = [value for value in PAGE.unlabelled if predicate(value)]
    return found


def error_example(code: str) -> dict[str, Any]:
    return example(lambda v: v.get("type") == "error" and v["payload"]["code"] == code)


def next_envelope(node: Node) -> dict[str, Any]:
    """The next envelope but the gateway's heartbeat pings."""
    for _ in range(100):
        envelope = node.recv()
        if envelope != {"type": "ping", "timestamp": envelope.get("timestamp")}:
            return envelope
    raise AssertionError("only heartbeat pings arrived")


def closing_code(envelope: dict[str, Any]) -> int | None:
    if envelope["type"] == "error":
        return CLOSES_AFTER.get(envelope["payload"]["code"])
    if envelope["type"] == "ack":
        return CLOSES_AFTER.get(envelope["payload"].get("action"))
    return None


@pytest.fixture
def documented_gateway(section: Section) -> Iterator[GatewayProcess]:
    """A gateway started with the options the section documents."""
    with running_gateway(*section.options) as gateway:
        yield gateway


@pytest.mark.parametrize(
    "section", NODE_SECTIONS, ids=[f"section{number}" for number in range(len(NODE_SECTIONS))]
)
def test_documented_exchanges_are_what_the_gateway_does(
    section: Section, documented_gateway: GatewayProcess
) -> None:
    bindings = Bindings()
    nodes: dict[str, Node] = {}
    closed: set[str] = set()
    try:
        for number, step in enumerate(section.steps):
            where = f"step {number} ({step.actor} {step.verb})"
            if step.verb == "sends":
                node = nodes.get(step.actor) or nodes.setdefault(step.actor, Node(documented_gateway.url))
                node.send(bindings.request(step.envelope))
                continue
            assert step.actor in nodes, f"{where}: {step.actor} has no connection"
            real = next_envelope(nodes[step.actor])
            bindings.match(step.envelope, real, where)
            code = closing_code(real)
            if code is not None:
                assert expect_closed(nodes[step.actor])[0] == code, where
                closed.add(step.actor)
        # Nothing was delivered that the page does not show.
        for actor, node in nodes.items():
            if actor not in closed:
                expect_silence(node, 0.2)
    finally:
        for node in nodes.values():
            node.close()


@pytest.mark.parametrize("section", CURL_SECTIONS, ids=["curl"])
def test_documented_curl_session_runs_as_shown(section: Section, documented_gateway: GatewayProcess) -> None:
    bindings = Bindings()
    for number, command in enumerate(section.commands):
        line = bindings.text(command.text).replace("127.0.0.1:3000", f"127.0.0.1:{documented_gateway.port}")
        result = subprocess.run(
            ["bash", "-c", line], capture_output=True, text=True, timeout=30, env=NO_PROXY_ENV,
        )
        expected_status = 28 if "--max-time" in command.text else 0  # 28: curl's "time is up"
        assert result.returncode == expected_status, (command.text, result.stderr)
        output = result.stdout.rstrip("\n").split("\n")
        assert len(output) == len(command.output), f"command {number}: {command.text}\n{result.stdout}"
        for documented, real in zip(command.output, output):
            where = f"command {number}: {real}"
            if documented.startswith(("{", "data: {")):
                prefix = "data: " if documented.startswith("data: ") else ""
                assert real.startswith(prefix), where
                bindings.match(json.loads(documented[len(prefix):]), json.loads(real[len(prefix):]), where)
            else:
                assert real == documented, where


def test_every_error_code_is_documented() -> None:
    table = PAGE.text.split("\nErrors\n------\n", 1)[1].split("\nErrors of an ordinary gateway", 1)[0]
    listed = re.findall(r"^``([A-Z_]+)``  ", table, re.MULTILINE)
    assert sorted(listed) == sorted(errors.ALL_CODES)
    shown = {
        value["payload"]["code"]
        for value in PAGE.unlabelled + [step.envelope for s in NODE_SECTIONS for step in s.steps]
        if isinstance(value, dict) and value.get("type") == "error"
    }
    assert shown == set(errors.ALL_CODES), "every code has a literal example"


def test_every_message_type_has_a_replayed_example() -> None:
    sent = {step.envelope.get("type") for s in NODE_SECTIONS for step in s.steps if step.verb == "sends"}
    assert {"register", "unregister", "join_group", "leave_group", "broadcast", "direct", "ping"} <= sent
    received = {step.envelope["type"] for s in NODE_SECTIONS for step in s.steps if step.verb == "receives"}
    assert {"broadcast", "direct", "presence"} <= received
    messages = [
        step.envelope["payload"]["message"] for s in NODE_SECTIONS for step in s.steps
        if step.envelope["type"] == "broadcast" and step.verb == "sends" and "message" in step.envelope["payload"]
    ]
    agent_events = {message.get("type") for message in messages if isinstance(message, dict)} - {None}
    assert agent_events == {"agent-start", "agent-stream", "tool-start", "tool-end", "agent-complete", "agent-error"}


def test_every_unlabelled_example_has_a_test_of_its_own() -> None:
    """Examples outside a replayed exchange are each checked by one test below."""
    kinds = sorted(
        value["payload"]["code"] if value["type"] == "error" else value["type"] for value in PAGE.unlabelled
    )
    assert kinds == ["MESSAGES_LOST", "PAYLOAD_TOO_LARGE", "UNAVAILABLE", "close", "ping"]


def test_documented_agent_turn_is_what_join_shows() -> None:
    """The terminal rendering of the documented agent turn, through join's own renderer."""
    [screen] = PAGE.screens
    delivered = [
        step.envelope for s in NODE_SECTIONS for step in s.steps
        if step.verb == "receives" and step.envelope["type"] == "broadcast"
        and isinstance(step.envelope["payload"], dict) and step.envelope["payload"].get("type") in AGENT_EVENTS
    ]
    out: list[str] = []
    renderer = Renderer(out.append)
    for envelope in delivered:
        renderer.message(Message.from_envelope(envelope))
    renderer.line("")
    assert "".join(out).split("\n")[:-2] == screen


def test_documented_oversized_message_reply(gateway: GatewayProcess) -> None:
    documented = error_example(errors.PAYLOAD_TOO_LARGE)
    size = int(re.search(r"message of (\d+) bytes", documented["payload"]["message"]).group(1))  # type: ignore[union-attr]
    node = Node(gateway.url)
    node.register("big")  # before registering, the limit is --max-unregistered-payload
    head = '{"type": "ping", "messageId": "big", "padding": "'
    node.ws.send(head + "x" * (size - len(head) - 2) + '"}')
    Bindings().match(documented, next_envelope(node))
    message_id = "after"
    node.send({"type": "ping", "messageId": message_id})
    assert reply_to(node, message_id)["type"] == "pong"
    node.close()


def test_documented_unavailable_reply() -> None:
    documented = error_example(errors.UNAVAILABLE)
    documented_id = re.search(r"node '([0-9a-f]{16})'", documented["payload"]["message"]).group(1)  # type: ignore[union-attr]
    redis = RedisServer()
    gateways = [start_member(redis.url, "gw1"), start_member(redis.url, "gw2")]
    try:
        wait_formed(gateways)
        sender, target = Node(gateways[0].url), Node(gateways[1].url)
        sender.register("sender")
        target.register("target")
        wait_until(lambda: cluster_stats(gateways[0])["nodes"]["totalNodes"] == 2, 3, "target known")
        redis.stop()
        wait_until(lambda: health_of(gateways[0])["status"] == "degraded", 5, "degraded")
        sender.send({"type": "direct", "messageId": "d1", "payload": {"targetNodeId": target.node_id, "message": 1}})
        bindings = Bindings()
        bindings.bind(documented_id, str(target.node_id), "the target")
        bindings.match(documented, reply_to(sender, "d1"))
        sender.close()
        target.close()
    finally:
        stop_all(gateways + [redis])


def test_documented_heartbeat_ping() -> None:
    documented = example(lambda v: v.get("type") == "ping")
    with running_gateway("--ping-interval", "200") as gateway:
        node = Node(gateway.url)
        Bindings().match(documented, node.recv(5))
        node.close()


def test_documented_messages_lost_notice() -> None:
    documented = error_example(errors.MESSAGES_LOST)
    lost = documented["payload"]["details"]["lost"]
    limit = documented["payload"]["details"]["maxMessages"]
    with running_gateway("--rate-limit", "0") as gateway:
        reader = BridgeNode(gateway.port)
        assert reader.register("reader").status == 200
        assert reader.join("ops").status == 200
        writer = Node(gateway.url)
        writer.register("writer")
        writer.join("ops")  # the reader's first queued message: presence
        for number in range(limit - 1 + lost):
            writer.send({"type": "broadcast", "payload": {"groupId": "ops", "message": number}})
        writer.send({"type": "ping", "messageId": "done"})
        assert reply_to(writer, "done", timeout=30)["type"] == "pong"
        first = reader.poll(after=0, timeout=0)
        assert [item["seq"] for item in first.body["messages"]] == list(range(1, limit + 1))
        notice = reader.poll(timeout=0).body["messages"]
        assert len(notice) == 1, notice
        Bindings().match(documented, notice[0]["envelope"])
        writer.close()


@pytest.mark.parametrize("name", ["docs/protocol.rst", "README.rst"])
def test_pages_are_clean_restructuredtext(name: str) -> None:
    """The reference and the README render without a docutils warning."""
    warnings = io.StringIO()
    docutils.core.publish_doctree(
        (DOC.parent.parent / name).read_text(encoding="utf-8"),
        settings_overrides={"warning_stream": warnings, "report_level": 2, "halt_level": 5},
    )
    assert warnings.getvalue() == ""


def test_documented_close_line_of_an_ssh_node(tmp_path: Path) -> None:
    """The real ``ssh -s wingman``: after an unregister's ack comes the documented close line."""
    documented = example(lambda v: v.get("type") == "close")
    key = UserKey(tmp_path, "alice")
    authorized = write_authorized_keys(tmp_path / "authorized_keys", key.line())
    with running_gateway(
        "--ssh", "tcp:0:interface=127.0.0.1", "--ssh-host-key", str(tmp_path / "host_key"),
        "--ssh-authorized-keys", str(authorized),
    ) as gateway:
        ssh_port = int(gateway.wait_for(r"SSH server on \S+ \(127\.0\.0\.1:(\d+)\)").group(1))
        node = SSHLineNode(ssh_port, key.path)
        try:
            assert node.request("register", {"name": "liner"})["type"] == "ack"
            assert node.request("unregister")["type"] == "ack"
            Bindings().match(documented, node.recv())
            assert node.proc.wait(timeout=10) == 0
        finally:
            node.stop()
