"""Per-node log lines gathered per reactor turn: one node keeps its own line,
several share one that names them all (escaped), and nothing is lost."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.logger import Logger, formatEvent

from wingman_gateway.turnlog import TurnLog

SINGLE = "node {nodeId} ({name}) registered over {transport} from {peer}"


def _log() -> tuple[TurnLog, Clock, list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    clock = Clock()
    turnlog = TurnLog(clock, Logger(namespace="test", observer=events.append), SINGLE,
                      "{count} nodes registered: {nodes}", "{nodeId} ({name}) over {transport} from {peer}",
                      "registered")
    return turnlog, clock, events


def _node(index: int, name: str | None = None) -> dict[str, Any]:
    return {"nodeId": f"id{index}", "name": name or f"n{index}", "transport": "websocket",
            "peer": f"tcp4:127.0.0.1:{5000 + index}", "subject": None}


def test_one_node_in_a_turn_gets_its_own_line_with_its_fields() -> None:
    turnlog, clock, events = _log()
    turnlog.add(**_node(1))
    assert events == []  # written at the end of the turn
    clock.advance(0)
    assert [formatEvent(e) for e in events] == ["node id1 (n1) registered over websocket from tcp4:127.0.0.1:5001"]
    assert {k: events[0][k] for k in _node(1)} == _node(1)


def test_nodes_of_one_turn_share_one_line_naming_each_and_the_next_turn_is_apart() -> None:
    turnlog, clock, events = _log()
    for index in range(3):
        turnlog.add(**_node(index, "evil\x1b[31m\nforged" if index == 1 else None))
    clock.advance(0)
    assert len(events) == 1
    assert formatEvent(events[0]) == (
        "3 nodes registered: id0 (n0) over websocket from tcp4:127.0.0.1:5000; "
        "id1 (evil\\x1b[31m\\nforged) over websocket from tcp4:127.0.0.1:5001; "
        "id2 (n2) over websocket from tcp4:127.0.0.1:5002"
    )
    assert [entry["nodeId"] for entry in events[0]["registered"]] == ["id0", "id1", "id2"]
    turnlog.add(**_node(9))
    clock.advance(0)
    assert len(events) == 2 and formatEvent(events[1]).startswith("node id9 (n9) registered")


def test_flush_writes_at_once_and_leaves_no_timer() -> None:
    turnlog, clock, events = _log()
    turnlog.add(**_node(1))
    turnlog.flush()
    assert len(events) == 1 and clock.getDelayedCalls() == []
    turnlog.flush()
    assert len(events) == 1
