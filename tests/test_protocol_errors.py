"""Every protocol error code, triggered through the real gateway process.

Each test checks the exact code and message, that the offending connection
still works unless the error is fatal, and that other members of the room
still get their broadcasts afterwards.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from harness.support import (
    GatewayProcess,
    Node,
    NodePool,
    assert_delivers,
    assert_usable,
    expect_closed,
    expect_error,
    expect_silence,
    health,
    reply_to,
    running_gateway,
    wait_totals,
)

MAX_PAYLOAD = 4096


pytestmark = pytest.mark.gateway("--max-payload", MAX_PAYLOAD, shared=True)  # one for the module




@pytest.fixture
def arena(nodes: NodePool) -> tuple[Node, Node]:
    """A watcher and a member in room 'arena', presence notices already read."""
    watcher = nodes("watcher", room="arena")
    member = nodes("member", room="arena")
    watcher.recv_type("presence")
    return watcher, member


def still_working(offender: Node, watcher: Node, member: Node) -> None:
    """The offender answers pings, the watcher got nothing from it, the room still delivers."""
    assert_usable(offender)
    expect_silence(watcher, 0.1)
    assert_delivers(member, watcher, "arena")


def next_error(node: Node) -> dict[str, Any]:
    """The next error envelope (one that could carry no messageId)."""
    return node.recv_type("error")


# --- INVALID_MESSAGE ---------------------------------------------------------------

NOT_JSON = "message is not valid JSON"
NOT_OBJECT = "envelope must be a JSON object"
BAD_TYPE = "envelope field 'type' must be a string"
BAD_ID = "envelope field 'messageId' must be a string or integer"

INVALID_MESSAGES: list[tuple[str | bytes, str]] = [
    ("{not json", NOT_JSON),
    ('{"type":"ping"', NOT_JSON),
    ('{"type":"ping"} {}', NOT_JSON),
    ("", NOT_JSON),
    ("[1, 2, 3]", NOT_OBJECT),
    ('"ping"', NOT_OBJECT),
    ("42", NOT_OBJECT),
    ("null", NOT_OBJECT),
    ('{"type": 5}', BAD_TYPE),
    ('{"type": null}', BAD_TYPE),
    ('{"type": ["ping"]}', BAD_TYPE),
    ('{"payload": {}}', BAD_TYPE),
    (b'{"type":"ping","x":"\xff\xfe"}', "message is not valid UTF-8"),
    (b"\xc3\x28", "message is not valid UTF-8"),
    ('{"type":"ping","payload":{"x":' + "[" * 200 + "]" * 200 + "}}",
     "JSON nested deeper than 64 levels"),
    ('{"a":' * 200 + "1" + "}" * 200, "JSON nested deeper than 64 levels"),
    ('{"type":"ping","payload":{"x":NaN}}', NOT_JSON),
    ('{"type":"ping","n":NaN}', NOT_JSON),
    ('{"type":"ping","payload":{"x":[Infinity]}}', NOT_JSON),
    ('{"type":"ping","payload":{"x":-Infinity}}', NOT_JSON),
    ('{"type":"ping","messageId":[1]}', BAD_ID),
    ('{"type":"ping","messageId":true}', BAD_ID),
    ('{"type":"ping","messageId":1.5}', BAD_ID),
]


@pytest.mark.parametrize("frame, message", INVALID_MESSAGES)
def test_invalid_message(arena: tuple[Node, Node], nodes: NodePool, frame: str | bytes, message: str) -> None:
    watcher, member = arena
    offender = nodes("offender", room="arena")
    watcher.recv_type("presence")
    offender.ws.send(frame)
    error = next_error(offender)
    expect_error(error, "INVALID_MESSAGE", message)
    assert "messageId" not in error
    still_working(offender, watcher, member)


@pytest.mark.parametrize(
    "frame, message",
    [
        ('{"type":"register","messageId":"np","payload":[1]}', "envelope field 'payload' must be an object"),
        ('{"type":"register","messageId":"np","payload":"x"}', "envelope field 'payload' must be an object"),
        ('{"type":7,"messageId":"np"}', BAD_TYPE),
    ],
)
def test_invalid_message_echoes_a_readable_message_id(
    arena: tuple[Node, Node], nodes: NodePool, frame: str, message: str
) -> None:
    """A client waiting on its messageId must get the error that answers it."""
    watcher, member = arena
    offender = nodes()
    offender.ws.send(frame)
    expect_error(reply_to(offender, "np"), "INVALID_MESSAGE", message)
    assert offender.register("offender")["type"] == "ack"
    still_working(offender, watcher, member)


# --- UNKNOWN_MESSAGE_TYPE -----------------------------------------------------------


@pytest.mark.parametrize("kind", ["subscribe", "", "PING", "ack", "presence", "x" * 100, "é"])
def test_unknown_message_type(arena: tuple[Node, Node], nodes: NodePool, kind: str) -> None:
    watcher, member = arena
    offender = nodes("offender", room="arena")
    watcher.recv_type("presence")
    reply = offender.request(kind, {"groupId": "arena", "message": "x"})
    expect_error(reply, "UNKNOWN_MESSAGE_TYPE", f"unknown message type {kind[:40]!r}")
    still_working(offender, watcher, member)


# --- PAYLOAD_TOO_LARGE -----------------------------------------------------------------


def padded(size: int, kind: str = "ping", fill: str = "a", extra: str = "") -> str:
    """An envelope of exactly ``size`` UTF-8 bytes (``fill`` is one character)."""
    head = '{"type":"' + kind + '",' + extra + '"messageId":"big","pad":"'
    room = size - len(head.encode()) - 2
    width = len(fill.encode())
    text = head + fill * (room // width) + "a" * (room % width) + '"}'
    assert len(text.encode()) == size
    return text


def test_payload_too_large_is_refused_and_connection_stays(arena: tuple[Node, Node], nodes: NodePool) -> None:
    watcher, member = arena
    offender = nodes("offender", room="arena")
    watcher.recv_type("presence")
    too_large = "message of {} bytes exceeds the limit of 4096 bytes"

    offender.ws.send(padded(MAX_PAYLOAD))
    assert reply_to(offender, "big")["type"] == "pong"
    for frame, size in (
        (padded(5000), 5000),
        (padded(MAX_PAYLOAD + 1), MAX_PAYLOAD + 1),
        (padded(5000).encode(), 5000),
        # Fewer characters than the limit, more bytes.
        (padded(4224, fill="é"), 4224),
        # A broadcast that is too large reaches no one.
        (padded(5000, "broadcast", extra='"groupId":"arena",'), 5000),
    ):
        offender.ws.send(frame)
        error = next_error(offender)
        payload = expect_error(error, "PAYLOAD_TOO_LARGE", too_large.format(size))
        assert payload["details"] == {"limit": MAX_PAYLOAD}
        assert "messageId" not in error
    # A fragmented message is measured as a whole.
    offender.ws.send(iter(["a" * 2000, "b" * 2000, "c" * 2000]))
    expect_error(next_error(offender), "PAYLOAD_TOO_LARGE", too_large.format(6000))
    still_working(offender, watcher, member)


# --- INVALID_REQUEST ---------------------------------------------------------------------

REGISTER_INVALID: list[tuple[dict[str, Any], str]] = [
    ({"name": "n" * 101}, "'name' is longer than 100 characters"),
    ({}, "'name' is required"),
    ({"name": None}, "'name' is required"),
    ({"name": 5}, "'name' must be a string"),
    ({"name": "   "}, "'name' must not be empty"),
    ({"name": "a", "capabilities": "code"}, "'capabilities' must be a list of strings"),
    ({"name": "a", "capabilities": [1]}, "'capabilities' must be a list of strings"),
    ({"name": "a", "capabilities": ["c"] * 65}, "'capabilities' has more than 64 entries"),
    ({"name": "a", "capabilities": ["c" * 101]}, "each of 'capabilities' must be at most 100 characters"),
    ({"name": "a", "agentName": "x" * 101}, "'agentName' is longer than 100 characters"),
    ({"name": "a", "sessionId": 7}, "'sessionId' must be a string"),
    ({"name": "a", "metadata": []}, "'metadata' must be an object"),
]


@pytest.mark.parametrize("payload, message", REGISTER_INVALID)
def test_register_with_bad_fields_is_invalid_request(
    gateway: GatewayProcess, arena: tuple[Node, Node], nodes: NodePool, payload: dict[str, Any], message: str
) -> None:
    watcher, member = arena
    offender = nodes()
    expect_error(offender.request("register", payload), "INVALID_REQUEST", message)
    assert health(gateway)["stats"]["totalNodes"] == 2
    # The same connection can still register, with a name at the length limit.
    reply = offender.register("n" * 100)
    assert reply["type"] == "ack" and reply["payload"]["name"] == "n" * 100
    still_working(offender, watcher, member)


REQUEST_INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("join_group", {"groupName": "g" * 101, "createIfNotExists": True},
     "'groupName' is longer than 100 characters"),
    ("join_group", {"groupName": "new", "createIfNotExists": True, "description": "d" * 501},
     "'description' is longer than 500 characters"),
    ("join_group", {"groupName": "new", "createIfNotExists": "yes"},
     "'createIfNotExists' must be true or false"),
    ("join_group", {"groupName": "new", "createIfNotExists": True, "strategy": "random"},
     "'strategy' must be one of: parallel, sequential"),
    ("join_group", {}, "'groupId' or 'groupName' is required"),
    ("join_group", {"groupId": 5}, "'groupId' must be a string"),
    ("join_group", {"groupName": ""}, "'groupName' must not be empty"),
    ("leave_group", {}, "'groupId' or 'groupName' is required"),
    ("broadcast", {"groupId": "arena"}, "'message' is required"),
    ("broadcast", {"message": 1}, "'groupId' or 'groupName' is required"),
    ("broadcast", {"groupId": ["arena"], "message": 1}, "'groupId' must be a string"),
    ("direct", {"message": 1}, "'targetNodeId' is required"),
    ("direct", {"targetNodeId": 5, "message": 1}, "'targetNodeId' must be a string"),
    ("direct", {"targetNodeId": "0000000000000000"}, "'message' is required"),
]


@pytest.mark.parametrize("kind, payload, message", REQUEST_INVALID)
def test_request_with_bad_fields_is_invalid_request(
    gateway: GatewayProcess, arena: tuple[Node, Node], nodes: NodePool, kind: str,
    payload: dict[str, Any], message: str,
) -> None:
    watcher, member = arena
    offender = nodes("offender", room="arena")
    watcher.recv_type("presence")
    expect_error(offender.request(kind, payload), "INVALID_REQUEST", message)
    assert health(gateway)["stats"]["totalGroups"] == 1
    still_working(offender, watcher, member)


def test_lengths_at_the_limits_are_accepted(nodes: NodePool) -> None:
    node = nodes("n" * 100)
    reply = node.request(
        "join_group", {"groupName": "g" * 100, "createIfNotExists": True, "description": "d" * 500}
    )
    assert reply["type"] == "ack"
    assert (reply["payload"]["groupName"], reply["payload"]["description"]) == ("g" * 100, "d" * 500)


# --- request errors that leave everything working ---------------------------------

REQUEST_ERRORS: list[tuple[str, bool, str, dict[str, Any] | None, str, str]] = [
    ("NOT_REGISTERED", False, "broadcast", {"groupId": "arena", "message": 1},
     "NOT_REGISTERED", "register before sending this message"),
    ("NOT_REGISTERED join", False, "join_group", {"groupName": "arena"},
     "NOT_REGISTERED", "register before sending this message"),
    ("ALREADY_REGISTERED", True, "register", {"name": "again"},
     "ALREADY_REGISTERED", "this connection is already registered as node {node}"),
    ("GROUP_NOT_FOUND", True, "broadcast", {"groupId": "nowhere", "message": 1},
     "GROUP_NOT_FOUND", "no room 'nowhere'"),
    ("GROUP_NOT_FOUND join", True, "join_group", {"groupName": "nowhere"},
     "GROUP_NOT_FOUND", "no room 'nowhere'"),
    ("NOT_A_MEMBER", True, "broadcast", {"groupId": "arena", "message": 1},
     "NOT_A_MEMBER", "you are not a member of room 'arena'"),
    ("NOT_A_MEMBER leave", True, "leave_group", {"groupName": "arena"},
     "NOT_A_MEMBER", "you are not a member of room 'arena'"),
    ("NODE_NOT_FOUND", True, "direct", {"targetNodeId": "0000000000000000", "message": 1},
     "NODE_NOT_FOUND", "no node '0000000000000000'"),
]


@pytest.mark.parametrize(
    "registered, kind, payload, code, message", [case[1:] for case in REQUEST_ERRORS],
    ids=[case[0] for case in REQUEST_ERRORS],
)
def test_request_error_leaves_connection_and_room_working(
    arena: tuple[Node, Node], nodes: NodePool, registered: bool, kind: str,
    payload: dict[str, Any] | None, code: str, message: str,
) -> None:
    watcher, member = arena
    offender = nodes("offender") if registered else nodes()
    reply = offender.request(kind, payload)
    expect_error(reply, code, message.format(node=offender.node_id))
    still_working(offender, watcher, member)


# --- FORBIDDEN by room limits (own gateways) ------------------------------------------


def test_rooms_per_node_limit_is_forbidden() -> None:
    with running_gateway("--max-rooms-per-node", "2") as gateway:
        pool = NodePool(gateway)
        try:
            owner = pool("owner", room="existing")
            node = pool("busy", room="r1")
            node.join("r2")
            for room in ("r3", "existing"):
                payload = expect_error(node.join(room), "FORBIDDEN", "a node may be in at most 2 rooms")
                assert payload["details"] == {"limit": 2}
            assert health(gateway)["stats"]["totalGroups"] == 3
            assert_usable(node)
            expect_silence(owner, 0.1)
            node.request("leave_group", {"groupName": "r1"})
            assert node.join("existing")["payload"]["created"] is False
            assert_delivers(node, owner, "existing")
        finally:
            pool.close_all()


def test_rooms_per_gateway_limit_is_forbidden() -> None:
    with running_gateway("--max-rooms", "2") as gateway:
        pool = NodePool(gateway)
        try:
            a = pool("a", room="one")
            b = pool("b", room="two")
            c = pool("c")
            payload = expect_error(c.join("three"), "FORBIDDEN", "the gateway has reached its limit of 2 rooms")
            assert payload["details"] == {"limit": 2}
            assert health(gateway)["stats"]["totalGroups"] == 2
            assert_usable(c)
            assert c.join("one")["payload"]["created"] is False
            a.recv_type("presence")
            assert_delivers(c, a, "one")
            b.request("leave_group", {"groupName": "two"})
            assert c.join("three")["payload"]["created"] is True
        finally:
            pool.close_all()


# --- MAX_NODES_REACHED (fatal) -----------------------------------------------------------


def test_max_nodes_reached_closes_with_try_again() -> None:
    with running_gateway("--max-nodes", "2") as gateway:
        pool = NodePool(gateway)
        try:
            a = pool("a", room="full")
            b = pool("b", room="full")
            a.recv_type("presence")
            third = pool()
            assert_usable(third)  # connecting is fine; registering is what counts
            payload = expect_error(third.register("c"), "MAX_NODES_REACHED", "gateway is full (2 nodes)")
            assert payload["details"] == {"limit": 2}
            assert expect_closed(third) == (1013, "gateway is full (2 nodes)")
            assert health(gateway)["stats"]["totalNodes"] == 2
            assert_delivers(a, b, "full")
            assert_delivers(b, a, "full")
            b.close()
            wait_totals(gateway, 1, 1)
            late = pool("late", room="full")
            assert_delivers(late, a, "full")
        finally:
            pool.close_all()


# --- RATE_LIMITED -------------------------------------------------------------------------


def test_rate_limit_meters_every_message() -> None:
    """Requests, and invalid messages, share a bucket; ping and pong have their own.

    The older pair maps to a bucket: 5 per hour is a burst of 5 and one
    more every 720 s.
    """
    with running_gateway("--rate-limit", "5", "--rate-window", "3600000") as gateway:
        pool = NodePool(gateway)
        try:
            watcher = pool("watcher", room="busy")  # 2 of its 5
            sender = pool("sender", room="busy")  # 2 of its 5
            watcher.recv_type("presence")
            for n in range(3):
                ack = sender.request("broadcast", {"groupId": "busy", "message": n})
                assert ack["type"] == "ack"
                assert watcher.recv_type("broadcast")["payload"] == n
            reply = sender.request("broadcast", {"groupId": "busy", "message": "one too many"})
            payload = expect_error(
                reply, "RATE_LIMITED",
                "rate limit of 0.00138889 messages per second (bursts of 5) exceeded",
            )
            retry = payload["retryAfterMs"]
            assert type(retry) is int and 715_000 < retry <= 720_000
            assert payload["details"] == {"retryAfterMs": retry, "rate": 5 / 3600, "burst": 5}
            # Still limited, whatever the message, valid or not.
            expect_error(sender.request("join_group", {"groupName": "busy"}), "RATE_LIMITED")
            sender.ws.send("not json")
            expect_error(sender.recv(), "RATE_LIMITED")
            for n in range(5):
                sender.send({"type": "ping", "messageId": n})
                assert reply_to(sender, n)["type"] == "pong"
            sender.send({"type": "ping", "messageId": "p"})
            expect_error(reply_to(sender, "p"), "RATE_LIMITED")
            sender.send({"type": "pong"})
            expect_silence(sender, 0.1)
            # The refused broadcast reached no one; others in the room are unaffected.
            other = pool("other", room="busy")
            assert_delivers(other, watcher, "busy")
        finally:
            pool.close_all()
