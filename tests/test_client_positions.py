"""The client's record of each room's position (pure: no gateway needed)."""

from __future__ import annotations

from typing import Any

from wingman_gateway.client.positions import Positions


def at(offset: int, epoch: str = "e1", room: str = "room", **extra: Any) -> dict[str, Any]:
    return {"groupName": room, "offset": offset, "epoch": epoch, **extra}


def test_deliveries_move_the_position_and_repeats_are_dropped() -> None:
    positions = Positions()
    positions.joined(at(3))
    assert positions.since("room") == {"offset": 3, "epoch": "e1"}
    assert [positions.delivered(at(n)) for n in (4, 5, 5, 4, 6)] == [True, True, False, False, True]
    assert positions.since("room") == {"offset": 6, "epoch": "e1"}
    assert positions.since("other") is None


def test_an_own_send_acked_before_earlier_deliveries_waits_for_them() -> None:
    positions = Positions()
    positions.joined(at(0))
    positions.sent(at(2))  # over the bridge the ack can overtake delivery 1
    assert positions.since("room")["offset"] == 0
    assert positions.delivered(at(1)) is True
    assert positions.since("room")["offset"] == 2
    assert positions.delivered(at(2)) is False  # its own message, replayed after a rejoin


def test_a_rejoin_reports_recovered_or_a_gap_with_its_reason() -> None:
    positions = Positions()
    positions.joined(at(5))
    since = positions.since("room")
    event = positions.resumed(since, at(9, recovered=True))
    assert event == ("recovered", {"room": "room", "since": since, "missed": 4})
    event = positions.resumed(since, at(2, "e2", recovered=False, reason="other epoch"))
    assert event == ("gap", {"room": "room", "since": since, "reason": "other epoch"})
    assert positions.since("room") == {"offset": 2, "epoch": "e2"}
    assert positions.resumed(None, at(2, "e2")) is None


def test_envelopes_without_a_position_pass_and_forget_clears() -> None:
    positions = Positions()
    assert positions.delivered({"groupName": "room"}) is True
    positions.joined(at(1))
    positions.forget("room")
    assert positions.since("room") is None
