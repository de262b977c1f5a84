"""The protocol core's record of each room's position (pure: no gateway needed)."""

from __future__ import annotations

from typing import Any

from wingman_gateway.protocol.envelopes import Position
from wingman_gateway.protocol.positions import Positions


def at(offset: int, epoch: str = "e1", **extra: Any) -> dict[str, Any]:
    return {"groupName": "room", "offset": offset, "epoch": epoch, **extra}


def test_deliveries_move_the_position_and_repeats_are_dropped() -> None:
    positions = Positions()
    positions.joined("room", at(3), {})
    assert positions.get("room") == Position(3, "e1")
    assert [positions.delivered("room", at(n)) for n in (4, 5, 5, 4, 6)] == [True, True, False, False, True]
    assert positions.get("room") == Position(6, "e1") and positions.get("other") is None


def test_an_own_send_acked_before_earlier_deliveries_waits_for_them() -> None:
    positions = Positions()
    positions.joined("room", at(0), {})
    positions.sent("room", at(2))  # over the bridge the ack can overtake delivery 1
    assert positions.get("room") == Position(0, "e1")
    assert positions.delivered("room", at(1)) is True
    assert positions.get("room") == Position(2, "e1")
    assert positions.delivered("room", at(2)) is False  # its own message, replayed after a rejoin


def test_a_rejoin_reports_recovered_or_a_gap_with_its_reason() -> None:
    positions = Positions()
    positions.joined("room", at(5), {})
    since = positions.get("room")
    event = positions.resumed("room", since, at(9, recovered=True), {})
    assert event == ("recovered", {"room": "room", "since": {"offset": 5, "epoch": "e1"}, "missed": 4})
    event = positions.resumed("room", since, at(2, "e2", recovered=False, reason="other epoch"), {})
    assert event == ("gap", {"room": "room", "since": {"offset": 5, "epoch": "e1"}, "reason": "other epoch"})
    assert positions.get("room") == Position(2, "e2")
    assert positions.resumed("room", None, at(2, "e2"), {}) is None


def test_envelopes_without_a_position_pass_and_rooms_are_forgotten() -> None:
    positions = Positions()
    assert positions.delivered("room", {"groupName": "room"}) is True
    positions.joined("room", at(1), {})
    positions.joined("other", at(1), {})
    positions.keep(["other"])
    assert positions.get("room") is None and positions.get("other") == Position(1, "e1")
    positions.forget("other")
    assert positions.get("other") is None
