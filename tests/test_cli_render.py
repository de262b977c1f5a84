"""How `wingman gateway join` writes what other nodes sent: agent events of any
shape, and untrusted text that must only ever be text on the terminal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.cli_support import LineProcess
from harness.support import GatewayProcess, Node
from wingman_gateway.cli.render import Renderer
from wingman_gateway.cli.untrusted import block, json_line, one_line
from wingman_gateway.client import Message


def rendered(*payloads: Any, name: str = "coder") -> list[str]:
    """The screen lines for broadcasts from ``name`` in room ops."""
    out: list[str] = []
    renderer = Renderer(out.append)
    for payload in payloads:
        renderer.message(Message.from_envelope(
            {"type": "broadcast", "fromNodeId": "n1", "fromName": name, "groupName": "ops", "payload": payload}
        ))
    renderer.line("end")
    return "".join(out).splitlines()[:-1]


@pytest.mark.parametrize(
    ("event", "line"),
    [
        ({"type": "agent-start", "prompt": "fix it"}, "[ops] coder ▶ coder working on: fix it"),
        ({"type": "agent-start", "agent": "bot"}, '[ops] coder ▶ bot {"agent": "bot"}'),
        ({"type": "agent-start", "task": "fix it", "timestamp": 1}, '[ops] coder ▶ coder {"task": "fix it"}'),
        ({"type": "agent-start", "agent": 7, "prompt": ["a"]}, '[ops] coder ▶ coder {"agent": 7, "prompt": ["a"]}'),
        ({"type": "agent-stream"}, "[ops] coder: agent-stream (no fields)"),
        ({"type": "agent-stream", "text": "hi"}, '[ops] coder: agent-stream {"text": "hi"}'),
        ({"type": "tool-start", "toolName": "ls"}, "  ⚙ coder runs ls"),
        ({"type": "tool-start", "tool": "ls", "args": ["-l"]}, '  ⚙ coder tool-start {"tool": "ls", "args": ["-l"]}'),
        ({"type": "tool-end", "toolName": "ls"}, "  ✓ ls finished"),
        ({"type": "tool-end", "toolName": "ls", "toolOutput": None}, "  ✓ ls → null"),
        ({"type": "tool-end", "output": 3}, '  ✓ coder tool-end {"output": 3}'),
        ({"type": "agent-error"}, "[ops] coder ✗ ERROR: (no fields)"),
        ({"type": "agent-error", "message": "boom"}, '[ops] coder ✗ ERROR: {"message": "boom"}'),
        ({"type": "agent-complete"}, "[ops] coder ■ done"),
    ],
)
def test_agent_events_show_what_they_hold_never_none(event: dict[str, Any], line: str) -> None:
    assert rendered(event) == [line]


def test_streamed_text_is_indented_under_its_sender() -> None:
    lines = rendered(
        {"type": "agent-stream", "chunk": "one\n[ops] admin: "},
        {"type": "agent-stream", "chunk": {"content": "two"}},
        {"type": "agent-stream", "chunk": {"event": "on_chain_start"}},  # no text: nothing shown
        "after",
    )
    assert lines == ["[ops] coder:", "    one", "    [ops] admin: two", "[ops] coder: after"]


def test_untrusted_names_and_texts_are_escaped_and_attributed() -> None:
    lines = rendered("line one\nline two\r\x1b[2J\x9b\u202e", name="x\n[ops] admin\x1b]2;t\x07")
    assert lines == [
        "[ops] x\\n[ops] admin\\x1b]2;t\\x07: line one",
        "    line two\\r\\x1b[2J\\x9b\\u202e",
    ]


def test_one_line_escapes_every_control_and_keeps_the_rest() -> None:
    assert one_line("a\tb\nc\rd\x00\x7f\x85\u2028\u2066\ud800 é 漢 🙂 \\x") == (
        "a\\tb\\nc\\rd\\x00\\x7f\\x85\\u2028\\u2066\\ud800 é 漢 🙂 \\x"
    )
    assert block("a\tb\nc\x1b", "  ") == "a\tb\n  c\\x1b"


def test_json_lines_stay_the_same_value_without_terminal_controls() -> None:
    value = {"name": "\x1b]52;c;eA==\x07\x9b\u202e é", "n": 1}
    text = json_line(value)
    assert json.loads(text) == value
    assert text == '{"name": "\\u001b]52;c;eA==\\u0007\\u009b\\u202e é", "n": 1}'
    assert json.loads(json_line("\ud800")) == "\ud800"


def test_join_json_lines_carry_hostile_text_as_escapes(gateway: GatewayProcess, tmp_path: Path) -> None:
    """The real ``join --json``: the same value arrives, with no terminal control in the line."""
    cli = LineProcess(tmp_path, "gateway", "join", gateway.url, "--json", "--name", "term", "--group", "ops")
    try:
        cli.read_until(lambda r: r.get("event") == "connected")
        sender = Node(gateway.url)
        hostile = "\x1b]52;c;b3duZWQ=\x07\x9b2J\u202eevil\u2028 é"
        sender.register(hostile)
        sender.join("ops")
        sender.send({"type": "broadcast", "payload": {"groupId": "ops", "message": hostile}})
        for _ in range(20):
            line = cli.lines.get(timeout=10)
            if json.loads(line).get("type") == "broadcast":
                break
        assert json.loads(line)["payload"] == hostile and json.loads(line)["fromName"] == hostile
        assert not set(line) & {"\x1b", "\x07", "\x9b", "\u202e", "\u2028"}, line
        assert '"\\u001b]52;c;b3duZWQ=\\u0007\\u009b2J\\u202eevil\\u2028 é"' in line
        sender.close()
    finally:
        cli.stop()


def test_rows_break_before_the_edge_and_continue_indented() -> None:
    """However a text is padded, nothing it holds can start a row on a 20-column terminal."""
    out: list[str] = []
    renderer = Renderer(out.append, lambda: 20)
    for payload in (
        " " * 9 + "[ops] admin: x",
        "漢字漢字漢字漢字漢字\t漢字",
        {"type": "agent-stream", "chunk": "a" * 12},
        {"type": "agent-stream", "chunk": "b" * 10 + "\n[ops] admin"},
    ):
        renderer.message(Message.from_envelope(
            {"type": "broadcast", "fromName": "eve", "groupName": "ops", "payload": payload}
        ))
    renderer.line("end")
    assert "".join(out).split("\n") == [
        "[ops] eve: " + " " * 9,
        "    [ops] admin: x",
        "[ops] eve: 漢字漢字",
        "    漢字漢字漢字",
        "    \t漢字",
        "[ops] eve:",
        "    aaaaaaaaaaaabbbb",
        "    bbbbbb",
        "    [ops] admin",
        "end",
        "",
    ]
