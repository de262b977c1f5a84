"""What the gateway delivers to a node, decoded once for every consumer."""

from __future__ import annotations

from typing import Any

import attrs


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


@attrs.frozen
class Message:
    """One delivered envelope (``broadcast``, ``direct``, ``presence`` or other).

    The routing fields are lifted out of the envelope so handlers need not
    know where each message type keeps them; ``envelope`` keeps everything.
    """

    type: str
    envelope: dict[str, Any]
    payload: Any = None
    from_node_id: str | None = None
    from_name: str | None = None
    group_id: str | None = None
    group_name: str | None = None
    timestamp: int | None = None

    @classmethod
    def from_envelope(cls, envelope: dict[str, Any]) -> "Message":
        """Decode a delivered envelope; ``presence`` names its subject as sender."""
        payload = envelope.get("payload")
        about = payload if isinstance(payload, dict) else {}
        presence = envelope.get("type") == "presence"
        from_node_id = _text(envelope.get("fromNodeId")) or _text(envelope.get("nodeId"))
        from_name = _text(envelope.get("fromName"))
        group_name = _text(envelope.get("groupName"))
        if presence:
            from_node_id = from_node_id or _text(about.get("nodeId"))
            from_name = from_name or _text(about.get("name"))
            group_name = group_name or _text(about.get("groupName"))
        timestamp = envelope.get("timestamp")
        return cls(
            type=str(envelope.get("type")),
            envelope=envelope,
            payload=payload,
            from_node_id=from_node_id,
            from_name=from_name,
            group_id=_text(envelope.get("groupId")) or (_text(about.get("groupId")) if presence else None),
            group_name=group_name,
            timestamp=timestamp if isinstance(timestamp, int) and not isinstance(timestamp, bool) else None,
        )
