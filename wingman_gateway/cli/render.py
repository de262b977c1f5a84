"""How a room looks in a terminal: messages, presence and agent streams.

Agent-stream events (PRD: agent-start, agent-stream, tool-start, tool-end,
agent-complete, agent-error) ride inside broadcast payloads; an agent's text
tokens are written inline under its name, tools and errors one line each.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from wingman_gateway.client import Message

AGENT_EVENTS = frozenset(
    {"agent-start", "agent-stream", "agent-complete", "agent-error", "tool-start", "tool-end"}
)
_SHORT = 100


def chunk_text(chunk: Any) -> str:
    """The text tokens in a raw stream chunk, whatever its common shape."""
    if isinstance(chunk, str):
        return chunk
    if isinstance(chunk, list):
        return "".join(chunk_text(part) for part in chunk)
    if isinstance(chunk, dict):
        for key in ("text", "content", "delta", "token"):
            if isinstance(chunk.get(key), (str, list)):
                return chunk_text(chunk[key])
        data = chunk.get("data")
        if isinstance(data, dict) and "chunk" in data:
            return chunk_text(data["chunk"])
        if "chunk" in chunk:
            return chunk_text(chunk["chunk"])
    return ""


def short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= _SHORT else text[: _SHORT - 1] + "…"


class Renderer:
    """Writes delivered messages for a person at a terminal."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write
        self._inline: str | None = None  # node whose tokens are being written inline

    def line(self, text: str) -> None:
        """A whole line, ending any inline stream first."""
        if self._inline is not None:
            self._write("\n")
            self._inline = None
        self._write(text + "\n")

    def message(self, message: Message) -> None:
        room = f"[{message.group_name}] " if message.group_name else ""
        who = message.from_name or message.from_node_id or "?"
        if message.type == "presence":
            payload = message.payload or {}
            for event in payload.get("events") or [payload]:  # a "batch" holds several
                reason = event.get("reason")
                detail = f" ({reason})" if reason and reason != "left" else ""
                self.line(f"* {event.get('name')} {event.get('event')} {room.strip()}{detail}")
        elif message.type in ("broadcast", "direct"):
            if message.type == "direct":
                room = "[direct] "
            payload = message.payload
            if isinstance(payload, dict) and payload.get("type") in AGENT_EVENTS:
                self._agent_event(room, who, message.from_node_id or who, payload)
            else:
                self.line(f"{room}{who}: {payload if isinstance(payload, str) else short(payload)}")

    def _agent_event(self, room: str, who: str, node: str, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "agent-start":
            agent = event.get("agent") or who
            self.line(f"{room}{who} ▶ {agent} working on: {short(event.get('prompt', ''))}")
        elif kind == "agent-stream":
            text = chunk_text(event.get("chunk"))
            if not text:
                return
            if self._inline != node:
                self.line(f"{room}{who}:")
                self._inline = node
            self._write(text)
        elif kind == "tool-start":
            self.line(f"  ⚙ {who} runs {event.get('toolName')} {short(event.get('toolInput'))}")
        elif kind == "tool-end":
            self.line(f"  ✓ {event.get('toolName')} → {short(event.get('toolOutput'))}")
        elif kind == "agent-complete":
            self.line(f"{room}{who} ■ done")
        elif kind == "agent-error":
            self.line(f"{room}{who} ✗ ERROR: {short(event.get('error', ''))}")
