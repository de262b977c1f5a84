"""Payloads pass through the real gateway byte for byte; binary frames work like text.

The agent-stream events are written by hand with unusual but
valid JSON formatting; a gateway that re-serialised them would change the
text (spacing, ``1e5``, escapes, big integers) even if the values matched.
"""

from __future__ import annotations

import json
from typing import Iterator

import pytest

from harness.support import (
    GatewayProcess,
    Node,
    NodePool,
    assert_delivers,
    assert_usable,
    expect_silence,
    recv_text,
    reply_to,
    running_gateway,
)

# One hand-written event of each agent-stream kind. Raw strings: every backslash is JSON's.
EVENTS: dict[str, str] = {
    "agent-start": r'''{ "type" : "agent-start", "agent": "c\u00f6der", "prompt": "Review the auth code — café ☕",
  "sessionId":"sess-\ud83d\ude00" ,"timestamp": 1706000000000 }''',
    "agent-stream": r'''{"type":"agent-stream",
	"chunk": { "event" : "on_chat_model_stream", "data": {"chunk": "The", "usage": {"tokens": 1e5,
	"ratio": 0.50, "big": 123456789012345678901234567890}}, "tags": [ ] , "meta": {}},
	"timestamp":1706000000100}''',
    "tool-start": r'''{"type": "tool-start", "toolName": "command_execute",
  "toolInput": {"command": "cat src/auth.ts", "args": ["-n", "\"quoted\"", "tab\there"], "env": null},
  "timestamp": 1.7060000010E12}''',
    "tool-end": r'''{"type":"tool-end","toolName":"command_execute","toolOutput":{"stdout":"line1\nline2\r\n",
"exitCode":0,"negative":-0.0,"tiny":-1E-7,"ok":true,"empty":""},"timestamp":1706000002000}''',
    "agent-complete": r'''{	"type": "agent-complete", "result": { "response": "The auth code looks good… 日本語",
  "score": 9007199254740993 , "nested": [[[1, [2, {"deep": "é"}]]]] }, "timestamp": 1706000005000}''',
    "agent-error": r'''{"type":"agent-error","error":"Boom: \u003cscript\u003e \/ slash \udc00",
"stack":"Error\n    at run (agent.ts:10:5)","timestamp":1706000005001}''',
}

# Messages need not be objects; each is forwarded as written.
SCALARS = [
    r'"just text with \u00e9 and é"',
    "[1, 2.50, 1e5, -0, 123456789012345678901234567890]",
    "12345678901234567890123",
    "1E+2",
    "true",
    "{}",
]


pytestmark = pytest.mark.gateway(shared=True)  # one gateway for the module




def room_of(nodes: NodePool, room: str) -> tuple[Node, Node, str]:
    """A sender and a receiver in ``room``; returns them and the room id."""
    sender = nodes("agent")
    room_id = sender.join(room)["payload"]["groupId"]
    receiver = nodes("viewer", room=room)
    sender.recv_type("presence")
    return sender, receiver, room_id


def assert_forwarded_verbatim(raw: str | bytes, message: str) -> dict:
    """The received frame holds ``"payload":`` followed by exactly the sent text."""
    assert isinstance(raw, str), "the gateway answers in text frames"
    assert raw.endswith(',"payload":' + message + "}"), raw
    assert raw.count('"payload":' + message) == 1
    received = json.loads(raw)
    assert received["payload"] == json.loads(message)
    return received


@pytest.mark.parametrize("kind", list(EVENTS))
def test_agent_event_broadcast_is_forwarded_byte_for_byte(nodes: NodePool, kind: str) -> None:
    sender, receiver, room_id = room_of(nodes, "stream")
    message = EVENTS[kind]
    assert json.loads(message)["type"] == kind
    sender.ws.send(
        '{ "type" : "broadcast" ,"messageId":"ev",\n "payload" : { "groupId" : "' + room_id
        + '" , "message" :  ' + message + "\n } }"
    )
    ack = reply_to(sender, "ev")
    assert ack["type"] == "ack" and ack["payload"]["recipients"] == 1
    received = assert_forwarded_verbatim(recv_text(receiver), message)
    assert (received["type"], received["fromNodeId"], received["groupId"]) == (
        "broadcast", sender.node_id, room_id)
    expect_silence(sender)


def test_agent_stream_in_order_and_untouched(nodes: NodePool) -> None:
    """A whole agent run, sent back to back, arrives in send order, each event verbatim."""
    sender, receiver, room_id = room_of(nodes, "run")
    order = ["agent-start", "agent-stream", "tool-start", "tool-end", "agent-complete", "agent-error"]
    for kind in order:
        sender.ws.send('{"type":"broadcast","groupId":"run","payload":{"message":' + EVENTS[kind] + "}}")
    for kind in order:
        received = assert_forwarded_verbatim(recv_text(receiver), EVENTS[kind])
        assert received["payload"]["type"] == kind
    expect_silence(sender)


@pytest.mark.parametrize("kind", ["agent-stream", "agent-complete"])
def test_agent_event_direct_is_forwarded_byte_for_byte(nodes: NodePool, kind: str) -> None:
    sender = nodes("agent")
    receiver = nodes("ui")
    message = EVENTS[kind]
    sender.ws.send(
        '{"payload": {"message": ' + message + ' , "targetNodeId":"' + str(receiver.node_id)
        + '"}, "type": "direct", "messageId": 9}'
    )
    assert reply_to(sender, 9)["payload"]["delivered"] is True
    received = assert_forwarded_verbatim(recv_text(receiver), message)
    assert (received["type"], received["targetNodeId"]) == ("direct", receiver.node_id)


@pytest.mark.parametrize("message", SCALARS)
def test_non_object_messages_are_forwarded_verbatim(nodes: NodePool, message: str) -> None:
    sender, receiver, room_id = room_of(nodes, "values")
    sender.ws.send('{"type":"broadcast","payload":{"groupId":"values","message":' + message + "}}")
    assert_forwarded_verbatim(recv_text(receiver), message)


# --- binary frames --------------------------------------------------------------


def test_binary_frames_carrying_utf8_json_work_like_text(nodes: NodePool) -> None:
    sender = nodes()
    receiver = nodes("viewer")
    room_id = receiver.join("binär")["payload"]["groupId"]

    sender.ws.send('{"type":"register","messageId":"r","payload":{"name":"bïnary ☕"}}'.encode("utf-8"))
    ack = reply_to(sender, "r")
    assert ack["type"] == "ack" and ack["payload"]["name"] == "bïnary ☕"
    sender.node_id = ack["payload"]["nodeId"]
    sender.ws.send('{"type":"join_group","messageId":"j","payload":{"groupName":"binär"}}'.encode("utf-8"))
    assert reply_to(sender, "j")["payload"]["groupId"] == room_id
    assert receiver.recv_type("presence")["payload"]["name"] == "bïnary ☕"

    message = EVENTS["agent-complete"]
    frame = '{"type":"broadcast","messageId":"b","payload":{"groupId":"binär","message":' + message + "}}"
    sender.ws.send(frame.encode("utf-8"))
    assert reply_to(sender, "b")["payload"]["recipients"] == 1
    received = assert_forwarded_verbatim(recv_text(receiver), message)
    assert received["fromName"] == "bïnary ☕"

    sender.ws.send(b'{"type":"ping","messageId":"p"}')
    assert reply_to(sender, "p")["type"] == "pong"
    # Text and binary frames mix freely on one connection.
    assert_usable(sender)
    assert_delivers(receiver, sender, room_id)
