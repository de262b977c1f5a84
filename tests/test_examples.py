"""Every example in examples/ runs against a real gateway (with a token), so
none rots: echo and streaming "model" agents for asyncio, Twisted and
JavaScript (Node, over the HTTP bridge), and the shell pipeline around
``wingman gateway join --json``. The browser page is run in test_js_client.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from harness.background import Background
from harness.support import GatewayProcess, Node

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
TOKEN = "example-Token-1"
ANSWER = "You asked: hello model. Here is my answer. "

ECHOES = {
    "asyncio": [sys.executable, str(EXAMPLES / "asyncio_echo.py")],
    "twisted": [sys.executable, str(EXAMPLES / "twisted_echo.py")],
    "javascript": ["node", str(EXAMPLES / "js" / "echo.mjs")],
}
MODELS = {
    "asyncio": [sys.executable, str(EXAMPLES / "asyncio_model.py")],
    "twisted": [sys.executable, str(EXAMPLES / "twisted_model.py")],
    "javascript": ["node", str(EXAMPLES / "js" / "model.mjs")],
}


pytestmark = pytest.mark.gateway("--auth", "--token", TOKEN, shared=True)  # one for the module


@pytest.fixture
def room(request: pytest.FixtureRequest) -> str:
    """A room of the test's own (agents of earlier tests may still be leaving theirs)."""
    return request.node.name.replace("[", "-").rstrip("]")


@pytest.fixture
def human(gateway: GatewayProcess, room: str) -> Iterator[Node]:
    """A person in the room (an independent WebSocket client), there before the agent."""
    node = Node(gateway.url)
    assert node.register("human", token=TOKEN)["type"] == "ack"
    assert node.join(room)["type"] == "ack"
    node.room = room  # type: ignore[attr-defined]
    try:
        yield node
    finally:
        node.close()


def example_env(gateway: GatewayProcess, room: str) -> dict[str, str]:
    return {"WINGMAN_URL": gateway.url, "WINGMAN_TOKEN": TOKEN, "WINGMAN_ROOM": room, "PYTHONPATH": str(ROOT)}


def wait_joined(human: Node, name: str, timeout: float = 20.0) -> None:
    presence = human.recv_type("presence", timeout)
    while not (presence["payload"]["event"] == "joined" and presence["payload"]["name"] == name):
        presence = human.recv_type("presence", timeout)


def say(human: Node, text: str) -> None:
    reply = human.request("broadcast", {"groupId": human.room, "message": text})  # type: ignore[attr-defined]
    assert reply["type"] == "ack" and reply["payload"]["recipients"] == 1, reply


@pytest.mark.parametrize("language", sorted(ECHOES))
def test_echo_agent(gateway: GatewayProcess, human: Node, room: str, language: str) -> None:
    agent = Background(ECHOES[language], env=example_env(gateway, room), cwd=str(ROOT))
    try:
        wait_joined(human, "echo")
        assert agent.wait_for(rf"echo ready as \w+ in {room}", 10)
        say(human, "hello there")
        heard = human.recv_type("broadcast", 10)
        assert heard["payload"] == "echo: hello there" and heard["fromName"] == "echo"
        human.send({"type": "direct", "payload": {"targetNodeId": heard["fromNodeId"], "message": "just us"}})
        private = human.recv_type("direct", 10)
        assert private["payload"] == "echo: just us"
    finally:
        agent.stop()


@pytest.mark.parametrize("language", sorted(MODELS))
def test_streaming_model_agent(gateway: GatewayProcess, human: Node, room: str, language: str) -> None:
    agent = Background(MODELS[language], env=example_env(gateway, room), cwd=str(ROOT))
    try:
        wait_joined(human, "model")
        say(human, "hello model")
        events = [human.recv_type("broadcast", 10)["payload"]]
        while events[-1]["type"] not in ("agent-complete", "agent-error"):
            events.append(human.recv_type("broadcast", 10)["payload"])
        kinds = [event["type"] for event in events]
        assert kinds[:3] == ["agent-start", "tool-start", "tool-end"], kinds
        assert set(kinds[3:-1]) == {"agent-stream"} and kinds[-1] == "agent-complete", kinds
        assert events[0]["agent"] == "model" and events[0]["prompt"] == "hello model"
        assert events[2]["toolName"] == "word_count" and events[2]["toolOutput"] == 2
        assert "".join(event["chunk"] for event in events[3:-1]) == ANSWER
        assert events[-1]["result"] == {"response": ANSWER}
        assert all(isinstance(event["timestamp"], int) for event in events)
    finally:
        agent.stop()


def test_shell_pipeline(gateway: GatewayProcess, human: Node, room: str) -> None:
    wingman = str(Path(sys.executable).with_name("wingman"))
    env = {**os.environ, **example_env(gateway, room), "WINGMAN": wingman, "PYTHON": sys.executable}
    # Its own session, so the pipeline's processes are stopped together.
    shell = subprocess.Popen(
        ["sh", str(EXAMPLES / "shell_shout.sh")], env=env, cwd=str(ROOT), start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_joined(human, "shout")
        say(human, "quiet please")
        heard = human.recv_type("broadcast", 10)
        assert heard["payload"] == "QUIET PLEASE" and heard["fromName"] == "shout"
    finally:
        os.killpg(shell.pid, signal.SIGTERM)
        shell.wait(10)
