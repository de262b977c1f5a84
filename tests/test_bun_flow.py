"""The original TypeScript/Bun client's flow, envelope for envelope as the
requirements show it: register (with a timestamp), join a room by name with
``createIfNotExists``, broadcast with the room's *name* as ``groupId``, and
``ping``. It keeps working next to the new clients."""

from __future__ import annotations

import time

from harness.support import GatewayProcess, Node, expect_silence


def now() -> int:
    return int(time.time() * 1000)


def test_the_bun_client_flow(gateway: GatewayProcess) -> None:
    agent, peer = Node(gateway.url), Node(gateway.url)
    try:
        agent.send({"type": "register", "payload": {"name": "agent-1", "capabilities": ["coding", "research"],
                                                     "token": "abc123"}, "timestamp": now()})
        registered = agent.recv_type("ack")
        node_id = registered["payload"]["nodeId"]
        assert registered["payload"]["name"] == "agent-1" and registered["payload"]["action"] == "register"

        agent.send({"type": "join_group", "nodeId": node_id, "payload": {
            "groupName": "swarm-1", "createIfNotExists": True, "description": "Collaborative coding"},
            "timestamp": now()})
        joined = agent.recv_type("ack")["payload"]
        assert joined["groupName"] == "swarm-1" and joined["created"] is True
        assert joined["description"] == "Collaborative coding"

        assert peer.register("observer")["type"] == "ack" and peer.join("swarm-1", create=False)["type"] == "ack"
        agent.send({"type": "broadcast", "nodeId": node_id, "payload": {
            "groupId": "swarm-1", "message": {"type": "task", "content": "Review code in PR #123"}},
            "timestamp": now()})
        heard = peer.recv_type("broadcast")
        assert heard["payload"] == {"type": "task", "content": "Review code in PR #123"}
        assert heard["fromNodeId"] == node_id and heard["groupId"] == joined["groupId"]
        expect_silence(agent, ignore=("ping", "presence"))  # no ack asked for (no messageId), none sent

        agent.send({"type": "ping", "timestamp": now()})
        assert agent.recv_type("pong")["type"] == "pong"
    finally:
        agent.close()
        peer.close()
