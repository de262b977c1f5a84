"""One room, three transports: a WebSocket node, a long-polling node and an
event-stream node all see each other, and nobody hears its own broadcast."""

from __future__ import annotations

import json
from typing import Any


from harness.bridgekit import BridgeNode, EventStream
from harness.support import GatewayProcess, Node, expect_silence


def stream_messages(stream: EventStream, count: int) -> list[dict[str, Any]]:
    """The next ``count`` broadcast/direct envelopes on a stream (bounded)."""
    got: list[dict[str, Any]] = []
    for _ in range(100):
        if len(got) == count:
            return got
        envelope = json.loads(stream.next_event()["data"])
        if envelope["type"] in ("broadcast", "direct"):
            got.append(envelope)
    raise AssertionError(f"only {got}")


def test_websocket_poll_and_stream_nodes_share_a_room(gateway: GatewayProcess) -> None:
    ws = Node(gateway.url)
    poller = BridgeNode(gateway.port)
    streamer = BridgeNode(gateway.port)
    try:
        assert ws.register("ws-node")["type"] == "ack"
        assert poller.register("poll-node").status == 200
        assert streamer.register("sse-node").status == 200
        stream = streamer.stream(after=0)
        for node in (ws, poller, streamer):
            reply = node.join("mixed")
            assert (reply["type"] if isinstance(reply, dict) else reply.body["type"]) == "ack"
        members = streamer.join("mixed").body["payload"]["members"]
        assert {m["name"] for m in members} == {"ws-node", "poll-node", "sse-node"}
        ids = {"ws": ws.node_id, "poll": poller.node_id, "sse": streamer.node_id}
        assert len(set(ids.values())) == 3

        # Each broadcasts once and reaches exactly the other two.
        ack = ws.request("broadcast", {"groupId": "mixed", "message": {"from": "ws"}})
        assert ack["payload"]["recipients"] == 2
        assert poller.broadcast("mixed", {"from": "poll"}).body["payload"]["recipients"] == 2
        assert streamer.broadcast("mixed", {"from": "sse"}).body["payload"]["recipients"] == 2

        heard_by_ws = [ws.recv_type("broadcast"), ws.recv_type("broadcast")]
        heard_by_poll = poller.drain()
        heard_by_sse = stream_messages(stream, 2)
        for heard, own in ((heard_by_ws, "ws"), (heard_by_poll, "poll"), (heard_by_sse, "sse")):
            assert sorted(m["payload"]["from"] for m in heard) == sorted({"ws", "poll", "sse"} - {own})
            for message in heard:
                sender = message["payload"]["from"]
                assert message["fromNodeId"] == ids[sender] and message["nodeId"] == ids[sender]
                assert message["groupName"] == "mixed" and isinstance(message["timestamp"], int)
        expect_silence(ws, 0.3, ignore=("ping", "presence"))

        # Directs cross transports too.
        assert poller.request("direct", {"targetNodeId": ids["sse"], "message": "p2s"}).status == 200
        ws.request("direct", {"targetNodeId": ids["poll"], "message": "w2p"})
        assert streamer.request("direct", {"targetNodeId": ids["ws"], "message": "s2w"}).status == 200
        assert stream_messages(stream, 1)[0]["payload"] == "p2s"
        assert [m["payload"] for m in poller.drain()] == ["w2p"]
        assert ws.recv_type("direct")["payload"] == "s2w"

        # Presence crosses too: the poll node leaves, the others are told.
        assert poller.request("leave_group", {"groupId": "mixed"}).status == 200
        presence = ws.recv_type("presence")
        assert presence["payload"]["event"] == "left" and presence["payload"]["nodeId"] == ids["poll"]
        for _ in range(10):
            envelope = json.loads(stream.next_event()["data"])
            if envelope["type"] == "presence" and envelope["payload"]["event"] == "left":
                assert envelope["payload"]["nodeId"] == ids["poll"]
                break
        else:
            raise AssertionError("no presence on the stream")
        stream.close()
    finally:
        ws.close()
