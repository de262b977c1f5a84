"""The interactive `wingman gateway join`, typed at and read from a real terminal (tmux)."""

from __future__ import annotations

import os
import shlex
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from harness.cli_support import WINGMAN
from harness.support import GatewayProcess, Node, wait_until


class Terminal:
    """A tmux server of our own running one command in a 160x40 window."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.socket = f"wingman-test-{uuid.uuid4().hex[:8]}"
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        line = f'env {exports} {shlex.join(command)}; echo "exit status $?"; sleep 30'
        self._tmux("new-session", "-d", "-s", "main", "-x", "160", "-y", "40", line)

    def _tmux(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=True, timeout=10
        ).stdout

    def type(self, text: str) -> None:
        self._tmux("send-keys", "-t", "main", "-l", text)
        self._tmux("send-keys", "-t", "main", "Enter")

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "main", "-J")

    def wait_for(self, check: Callable[[str], bool], timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            if check(text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"screen never matched; it shows:\n{text}")
            time.sleep(0.05)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=10)


@pytest.fixture
def terminal(gateway: GatewayProcess, tmp_path: Path) -> Iterator[Terminal]:
    env = {"WINGMAN_HOME": str(tmp_path), "PATH": os.environ["PATH"], "TERM": "xterm-256color"}
    term = Terminal([WINGMAN, "gateway", "join", gateway.url, "--name", "carol", "--group", "ops"], env)
    yield term
    term.close()


def test_typed_lines_reach_the_room_and_replies_show(gateway: GatewayProcess, terminal: Terminal) -> None:
    terminal.wait_for(lambda s: "connected to" in s and "in room ops" in s)
    agent = Node(gateway.url)
    agent.register("coder")
    assert agent.join("ops")["type"] == "ack"
    terminal.wait_for(lambda s: "* coder joined [ops]" in s)
    terminal.type("please review the auth module")
    received = agent.recv_type("broadcast")
    assert received["payload"] == "please review the auth module"
    assert received["fromName"] == "carol"
    agent.send({"type": "broadcast", "payload": {"groupId": "ops", "message": "on it"}})
    terminal.wait_for(lambda s: "[ops] coder: on it" in s)
    terminal.type(f"/direct {agent.node_id} just for you")
    direct = agent.recv_type("direct")
    assert direct["payload"] == "just for you"
    terminal.type("/who")
    terminal.wait_for(lambda s: "ops: carol" in s and "coder (" in s)
    agent.close()
    terminal.wait_for(lambda s: "* coder left [ops]" in s)
    terminal.type("/quit")
    terminal.wait_for(lambda s: "exit status 0" in s)


def agent_turn(
    gateway: GatewayProcess, terminal: Terminal, name: str, events: list[dict[str, Any]], until: str
) -> list[str]:
    """Broadcast ``events`` to ops from a new node ``name``; the pane's lines once ``until`` shows."""
    terminal.wait_for(lambda s: "in room ops" in s)
    agent = Node(gateway.url)
    try:
        agent.register(name)
        agent.join("ops")
        for event in events:
            agent.send({"type": "broadcast", "payload": {"groupId": "ops", "message": event}})
        screen = terminal.wait_for(lambda s: until in s)
    finally:
        agent.close()
    return [line.rstrip() for line in screen.splitlines() if line.strip()]


def test_agent_stream_renders_readably(gateway: GatewayProcess, terminal: Terminal) -> None:
    events = [
        {"type": "agent-start", "agent": "coder", "prompt": "Review the auth code"},
        {"type": "agent-stream", "chunk": {"event": "on_chat_model_stream", "data": {"chunk": "The"}}},
        {"type": "agent-stream", "chunk": {"event": "on_chat_model_stream", "data": {"chunk": " auth code"}}},
        {"type": "tool-start", "toolName": "command_execute", "toolInput": {"command": "cat src/auth.ts"}},
        {"type": "tool-end", "toolName": "command_execute", "toolOutput": "export function login() {}"},
        {"type": "agent-stream", "chunk": {"event": "on_chat_model_stream", "data": {"chunk": " looks fine."}}},
        {"type": "agent-complete", "result": {"response": "The auth code looks fine."}},
        {"type": "agent-error", "error": "rate limit from model provider"},
    ]
    lines = agent_turn(gateway, terminal, "coder-node", events, "ERROR: rate limit from model provider")
    start = lines.index("[ops] coder-node ▶ coder working on: Review the auth code")
    assert lines[start + 1 : start + 9] == [
        "[ops] coder-node:",
        "    The auth code",
        '  ⚙ coder-node runs command_execute {"command": "cat src/auth.ts"}',
        "  ✓ command_execute → export function login() {}",
        "[ops] coder-node:",
        "     looks fine.",
        "[ops] coder-node ■ done",
        "[ops] coder-node ✗ ERROR: rate limit from model provider",
    ]


def test_agent_events_of_another_shape_show_what_they_hold(gateway: GatewayProcess, terminal: Terminal) -> None:
    events = [
        {"type": "agent-start", "task": "triage"},
        {"type": "tool-start", "tool": "grep", "args": ["-r", "TODO"]},
        {"type": "tool-end", "toolName": "grep"},
        {"type": "agent-error", "message": "quota exceeded"},
        {"type": "agent-stream"},
    ]
    lines = agent_turn(gateway, terminal, "odd-agent", events, "agent-stream (no fields)")
    start = lines.index('[ops] odd-agent ▶ odd-agent {"task": "triage"}')
    assert lines[start + 1 :] == [
        '  ⚙ odd-agent tool-start {"tool": "grep", "args": ["-r", "TODO"]}',
        "  ✓ grep finished",
        '[ops] odd-agent ✗ ERROR: {"message": "quota exceeded"}',
        "[ops] odd-agent: agent-stream (no fields)",
    ]
    assert not [line for line in lines if "None" in line or "null" in line]


# Escape sequences a hostile member may put in its name or text: a window
# title (OSC 2), the clipboard (OSC 52), a carriage return and newlines that
# would start a forged line, an 8-bit CSI and a right-to-left override.
HOSTILE_NAME = "eve\x1b]2;owned-by-name\x07\x1b]52;c;b3duZWQ=\x07\r[lobby] admin"
HOSTILE_TEXT = (
    "hi\n[lobby] admin: paste this\r[lobby] admin: again"
    "\x1b]2;owned-by-text\x07\x1b]52;c;b3duZWQ=\x07\x9b2J\u202eevil"
)


def test_hostile_names_and_texts_cannot_act_on_the_terminal(
    gateway: GatewayProcess, terminal: Terminal
) -> None:
    terminal._tmux("set-option", "-g", "set-clipboard", "on")
    terminal.wait_for(lambda s: "in room ops" in s)
    title = terminal._tmux("display-message", "-p", "-t", "main", "#{pane_title}")
    mallory = Node(gateway.url)
    assert mallory.register(HOSTILE_NAME)["type"] == "ack"
    mallory.join("ops")
    shown = "[ops] eve\\x1b]2;owned-by-name\\x07\\x1b]52;c;b3duZWQ=\\x07\\r[lobby] admin"
    # Padded so that, wrapped by the 160-column terminal, it would start a row.
    padded = " " * (160 - len(f"{shown}: ")) + "[lobby] admin: padded"
    for payload in (
        HOSTILE_TEXT,
        padded,
        {"type": "agent-stream", "chunk": "streamed\n[lobby] admin: forged\x1b]2;owned-by-stream\x07"},
        {"type": "tool-start", "toolName": "sh\r[lobby] admin:", "toolInput": "\x1b]52;c;b3duZWQ=\x07"},
        "end of attack",
    ):
        mallory.send({"type": "broadcast", "payload": {"groupId": "ops", "message": payload}})
    terminal.wait_for(lambda s: "end of attack" in s)
    rows = terminal._tmux("capture-pane", "-p", "-t", "main")  # as displayed, wrapped rows apart
    assert not [row for row in rows.splitlines() if row.startswith("[lobby]")], rows
    assert "\n    [lobby] admin: padded\n" in rows
    screen = terminal.screen()
    assert f"{shown}: hi" in screen
    assert "\n    [lobby] admin: paste this\\r[lobby] admin: again\\x1b]2;owned-by-text" in screen
    assert "\\x9b2J\\u202eevil" in screen
    assert "\n    streamed\n    [lobby] admin: forged\\x1b]2;owned-by-stream\\x07" in screen
    assert "runs sh\\r[lobby] admin: \\x1b]52;c;b3duZWQ=\\x07" in screen
    assert terminal._tmux("display-message", "-p", "-t", "main", "#{pane_title}") == title
    assert terminal._tmux("list-buffers") == ""
    mallory.close()
    # The same bytes written raw do retitle a pane and fill a buffer: the checks above can fail.
    raw = "".join(f"\\{byte:03o}" for byte in HOSTILE_NAME.encode())
    terminal._tmux("new-window", "-d", "-n", "control", f"printf '{raw}'; sleep 30")
    wait_until(lambda: terminal._tmux("list-buffers"), 10, "the raw OSC 52 to fill a tmux buffer")
    assert terminal._tmux("display-message", "-p", "-t", "control", "#{pane_title}").strip() == "owned-by-name"
