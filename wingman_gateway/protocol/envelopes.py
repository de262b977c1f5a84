"""Envelopes a node sends, and the recovery positions it keeps per room."""

from __future__ import annotations

import json
from typing import Any, Sequence

import attrs


def encode(envelope: dict[str, Any]) -> str:
    """Compact, strict JSON (the gateway refuses NaN and Infinity)."""
    return json.dumps(envelope, separators=(",", ":"), allow_nan=False)


def register_payload(
    name: str,
    *,
    token: str | None = None,
    capabilities: Sequence[str] = (),
    agent_name: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    payload: dict[str, Any] = {"name": name}
    if capabilities:
        payload["capabilities"] = list(capabilities)
    if token is not None:
        payload["token"] = token
    if agent_name is not None:
        payload["agentName"] = agent_name
    if metadata is not None:
        payload["metadata"] = metadata
    return payload


def join_payload(
    room: str, create: bool, description: str | None, since: "Position | None" = None
) -> dict[str, Any]:
    payload: dict[str, Any] = {"groupName": room, "createIfNotExists": create}
    if description is not None:
        payload["description"] = description
    if since is not None:
        payload["since"] = {"offset": since.offset, "epoch": since.epoch}
    return payload


@attrs.frozen
class Position:
    """Where a node is in a room's message sequence: ``offset`` within ``epoch``."""

    offset: int
    epoch: Any

    @classmethod
    def find(cls, *places: Any) -> "Position | None":
        """The first ``{offset, epoch}`` pair in ``places`` (envelope, payload), if any."""
        for place in places:
            if not isinstance(place, dict):
                continue
            offset, epoch = place.get("offset"), place.get("epoch")
            if isinstance(offset, int) and not isinstance(offset, bool) and epoch is not None:
                return cls(offset, epoch)
        return None


class Positions:
    """The last recovery position seen per room, for ``since`` on rejoin.

    The gateway carries none yet; when acks and delivered broadcasts carry
    ``offset`` and ``epoch``, a rejoin asks for what was missed with
    ``since: {offset, epoch}``. Until then a rejoin sends no ``since``.
    """

    def __init__(self) -> None:
        self._by_room: dict[str, Position] = {}

    def get(self, room: str) -> Position | None:
        return self._by_room.get(room)

    def joined(self, room: str, ack_payload: dict[str, Any], envelope: dict[str, Any]) -> None:
        """A join ack: the room's position then (a new epoch replaces the old)."""
        position = Position.find(ack_payload, envelope)
        if position is not None:
            self._by_room[room] = position

    def delivered(self, room: str, envelope: dict[str, Any]) -> None:
        """A message in ``room``: later offsets move the position on."""
        position = Position.find(envelope)  # never the payload: that is the sender's
        if position is None:
            return
        known = self._by_room.get(room)
        if known is None or known.epoch != position.epoch or position.offset > known.offset:
            self._by_room[room] = position

    def forget(self, room: str) -> None:
        self._by_room.pop(room, None)

    def keep(self, rooms: Sequence[str]) -> None:
        for room in set(self._by_room) - set(rooms):
            del self._by_room[room]
