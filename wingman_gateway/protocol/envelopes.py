"""Envelopes a node sends, and a position in a room (``Position``)."""

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
