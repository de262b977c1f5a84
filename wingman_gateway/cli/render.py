"""How a room looks in a terminal: messages, presence and agent streams.

Agent-stream events (agent-start, agent-stream, tool-start, tool-end,
agent-complete, agent-error; docs/protocol.rst gives their fields) ride
inside broadcast payloads; an agent's text
tokens are written inline under its name, tools and errors one line each.
An event whose fields are missing or of another shape is shown as what it
holds (compact JSON), never as ``None``. Everything another node sent is
printed through ``untrusted``, so it can only ever appear as text.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable

from wcwidth import wcwidth

from wingman_gateway.agentstream import AGENT_EVENTS, chunk_text
from wingman_gateway.cli.untrusted import block, one_line
from wingman_gateway.client import Message

_SHORT = 100
# Where the continuation lines of a message and an agent's streamed text start.
INDENT = "    "


def short(value: Any) -> str:
    """A value on one line, cut to a readable length (JSON unless it is text)."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = one_line(text)
    return text if len(text) <= _SHORT else text[: _SHORT - 1] + "…"


def _has(event: dict[str, Any], key: str) -> bool:
    """Whether ``event[key]`` is non-empty text."""
    value = event.get(key)
    return isinstance(value, str) and bool(value.strip())


def _rest(event: dict[str, Any]) -> str:
    """What an event holds besides its type and timestamp, as compact JSON."""
    rest = {k: v for k, v in event.items() if k not in ("type", "timestamp")}
    return short(rest) if rest else "(no fields)"


def _cells(char: str, column: int) -> int:
    """How many columns ``char`` takes at ``column`` (tabs stop every 8)."""
    return 8 - column % 8 if char == "\t" else max(wcwidth(char), 0)


def terminal_width() -> int | None:
    """Columns of the terminal on standard output (None when it is not one)."""
    try:
        return os.get_terminal_size(sys.stdout.fileno()).columns
    except (OSError, ValueError):
        return None


class Renderer:
    """Writes delivered messages for a person at a terminal.

    With a ``width``, rows are broken before the terminal would wrap them
    and continue indented, so that no text, however padded, starts a row
    where a new message would.
    """

    def __init__(self, write: Callable[[str], None], width: Callable[[], int | None] = lambda: None) -> None:
        self._write = write
        self._width = width
        self._column = 0  # where the cursor is on the current row
        self._inline: str | None = None  # node whose tokens are being written inline

    def _fold(self, text: str) -> str:
        """``text`` as written from the current column, broken (and indented) before the edge."""
        width = self._width()
        if width is None or width <= 2 * len(INDENT):
            return text  # not a terminal, or too narrow to indent: it wraps as it will
        out: list[str] = []
        column = self._column
        for char in text:
            if char == "\n":
                out.append(char)
                column = 0
                continue
            cells = _cells(char, column)
            if column + cells > width:
                out.append("\n" + INDENT)
                column = len(INDENT)
                cells = _cells(char, column)
            out.append(char)
            column += cells
        self._column = column
        return "".join(out)

    def line(self, text: str) -> None:
        """A whole line, ending any inline stream first; further lines are indented."""
        if self._inline is not None:
            self._write("\n")
            self._inline = None
        self._column = 0
        self._write(self._fold(block(text, INDENT)) + "\n")
        self._column = 0

    def message(self, message: Message) -> None:
        room = f"[{one_line(message.group_name)}] " if message.group_name else ""
        who = one_line(message.from_name or message.from_node_id or "?")
        if message.type == "presence":
            payload = message.payload if isinstance(message.payload, dict) else {}
            for item in payload.get("events") or [payload]:  # a "batch" holds several
                if not isinstance(item, dict):
                    continue
                reason = item.get("reason")
                detail = f" ({short(reason)})" if reason and reason != "left" else ""
                event = short(item.get("event") or "changed")
                name = who if item is payload else short(item.get("name") or "?")
                self.line(f"* {name} {event} {room.strip()}{detail}")
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
            agent = short(event["agent"]) if _has(event, "agent") else who
            task = f" working on: {short(event['prompt'])}" if _has(event, "prompt") else f" {_rest(event)}"
            self.line(f"{room}{who} ▶ {agent}{task}")
        elif kind == "agent-stream":
            if "chunk" not in event:
                self.line(f"{room}{who}: agent-stream {_rest(event)}")
                return
            text = chunk_text(event["chunk"])
            if not text:
                return
            if self._inline != node:
                self.line(f"{room}{who}:")
                self._inline = node
                self._write(self._fold(INDENT))
            self._write(self._fold(block(text, INDENT)))
        elif kind in ("tool-start", "tool-end"):
            self._tool(who, kind, event)
        elif kind == "agent-complete":
            self.line(f"{room}{who} ■ done")
        elif kind == "agent-error":
            error = short(event["error"]) if _has(event, "error") else _rest(event)
            self.line(f"{room}{who} ✗ ERROR: {error}")

    def _tool(self, who: str, kind: str, event: dict[str, Any]) -> None:
        value = "toolInput" if kind == "tool-start" else "toolOutput"
        if not _has(event, "toolName"):
            self.line(f"  {'⚙' if kind == 'tool-start' else '✓'} {who} {kind} {_rest(event)}")
            return
        tool = short(event["toolName"])
        shown = f" {short(event[value])}" if value in event else ""
        if kind == "tool-start":
            self.line(f"  ⚙ {who} runs {tool}{shown}")
        else:
            self.line(f"  ✓ {tool} →{shown}" if shown else f"  ✓ {tool} finished")
