"""The JavaScript client (wingman.js) against the real gateway: under Node 20
over the HTTP bridge (no WebSocket there) and with a WebSocket class passed in
(Debian's ``ws``), in headless Chromium over its own WebSocket and over the
bridge, served by the gateway at /client/wingman.js; and the browser example."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
from playwright.sync_api import BrowserContext

from harness.background import Background
from harness.browserkit import FileServer, chromium
from harness.support import (
    LOCAL_NAMES,
    GatewayProcess,
    Node,
    free_tcp_port,
    http_get,
    make_pki,
    running_gateway,
    wait_totals,
)

ROOT = Path(__file__).resolve().parent.parent
CLIENT = ROOT / "wingman_gateway" / "web" / "static" / "wingman.js"
JS = Path(__file__).parent / "harness" / "js"
RUNNER = JS / "run.mjs"


def node_run(*args: str, timeout: float = 60, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a scenario under Node; its RESULT line."""
    done = subprocess.run(
        ["node", str(RUNNER), str(CLIENT), *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    [line] = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    return json.loads(line[len("RESULT "):])


def check_basics(result: dict[str, Any], chosen: str) -> None:
    assert result["chosen"] == [chosen, chosen] and result["distinct"]
    assert result["recipients"] == 1
    assert result["heard"] == {
        "payload": {"text": "héllo", "n": [1, 2.5, None, True]}, "fromName": "alice",
        "groupName": "alpha", "fromIsAlice": True, "timestamp": "number",
    }
    assert result["direct"] == {"payload": "psst", "fromName": "bob"}
    assert result["order"] == [0, 1, 2, 3, 4]
    assert result["errors"] == {
        "notMember": "NOT_A_MEMBER", "noRoom": "GROUP_NOT_FOUND", "noNode": "NODE_NOT_FOUND",
        "noLeave": "GROUP_NOT_FOUND",
    }
    assert result["members"] == ["alice", "bob"] and result["ping"] == "number"
    assert result["afterClose"] == {"iteration": True, "ping": "NOT_CONNECTED", "states": ["disconnected"]}
    assert result["leftSeen"] == "left"


def test_the_gateway_serves_the_client(gateway: GatewayProcess) -> None:
    status, headers, body = http_get(gateway, "/client/wingman.js")
    assert status == 200 and body == CLIENT.read_text(encoding="utf-8")
    assert headers["Content-Type"] == "text/javascript"
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert http_get(gateway, "/client/")[0] == 404 and http_get(gateway, "/client/other.js")[0] == 404


@pytest.mark.parametrize("wire", ["bridge", "ws"])
def test_node_basics(gateway: GatewayProcess, wire: str) -> None:
    result = node_run("basics", gateway.url, wire)
    check_basics(result, "http" if wire == "bridge" else "websocket")
    wait_totals(gateway, 0, 0)  # close() left nothing behind


@pytest.mark.parametrize("wire", ["bridge", "ws"])
def test_node_over_tls_with_a_test_ca(tmp_path: Path, wire: str) -> None:
    """Node verifies the gateway's certificate; a test CA is added with NODE_EXTRA_CA_CERTS."""
    pki = make_pki(tmp_path / "pki", LOCAL_NAMES)
    with running_gateway("--listen", pki.endpoint()) as gateway:
        url = f"wss://localhost:{gateway.port}/ws"
        check_basics(node_run("basics", url, wire, env={"NODE_EXTRA_CA_CERTS": str(pki.ca)}),
                     "http" if wire == "bridge" else "websocket")
        # Without the CA the certificate is refused; no wire gets through.
        result = node_run("refusals", url, wire, url)
        assert result["unreachable"] == "CONNECTION_FAILED" and result["auth"] == "CONNECTION_FAILED"


@pytest.mark.parametrize("wire", ["bridge", "ws"])
def test_node_refusals(wire: str) -> None:
    with running_gateway("--auth", "--token", "S3cret") as gateway:
        result = node_run("refusals", gateway.url, wire, f"ws://127.0.0.1:{free_tcp_port()}/ws")
    assert result == {"auth": "AUTH_FAILED", "authIsWingmanError": True, "unreachable": "CONNECTION_FAILED"}


@pytest.mark.parametrize("wire", ["bridge", "ws"])
def test_node_reconnects_and_rejoins_after_a_restart(wire: str) -> None:
    port = free_tcp_port()
    args = ["--listen", f"tcp:{port}:interface=127.0.0.1"]
    first = GatewayProcess(args)
    runner: Background | None = None
    second: GatewayProcess | None = None
    try:
        first.wait_listening()
        runner = Background(["node", str(RUNNER), str(CLIENT), "reconnects", f"ws://127.0.0.1:{port}/ws", wire],
                            stdin=True)
        runner.wait_for("RESTART", 20)
        first.stop()
        second = GatewayProcess(args)
        second.wait_listening()
        assert runner.proc.stdin is not None
        runner.proc.stdin.write("GO\n")
        runner.proc.stdin.flush()
        line = runner.wait_for(r"RESULT (.*)", 30)
        result = json.loads(line.group(1))
        for states in result["states"].values():
            assert states[0] == "disconnected" and states[-1] == "reconnected"
            assert set(states[1:-1]) == {"reconnecting", "gap"}
        # The restarted gateway kept no history: each room says so.
        assert result["gaps"] == {
            "alice": [{"room": "alpha", "reason": "other epoch"}, {"room": "second", "reason": "other epoch"}],
            "bob": [{"room": "alpha", "reason": "other epoch"}],
        }
        assert result["newId"] and result["sameRoom"]
        assert result["rooms"] == ["alpha", "second"]
        assert result["recipients"] == 1 and result["heard"] == "after restart"
    finally:
        for process in (runner, first, second):
            if process is not None:
                process.stop()


@pytest.fixture
def pages() -> Iterator[FileServer]:
    server = FileServer({
        "/": JS / "page.html", "/scenario.mjs": JS / "scenario.mjs",
        "/room.html": ROOT / "examples" / "browser" / "index.html",
    })
    yield server
    server.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[BrowserContext]:
    with chromium(tmp_path / "chromium-profile") as context:
        yield context


def test_chromium_websocket_and_bridge(pages: FileServer, browser: BrowserContext) -> None:
    with running_gateway("--cors-origin", pages.origin) as gateway:
        page = browser.new_page()
        page.goto(f"{pages.origin}/?gateway=http://127.0.0.1:{gateway.port}")
        page.wait_for_function("window.ready === true")
        check_basics(page.evaluate("(url) => basics(url)", gateway.url), "websocket")
        check_basics(page.evaluate("(url) => basics(url, {transport: 'http'})", gateway.url), "http")
        # No WebSocket at all (as in Node 20): the bridge, by itself.
        result = page.evaluate("(url) => basics(url, {WebSocket: null})", f"http://127.0.0.1:{gateway.port}")
        check_basics(result, "http")
    with running_gateway("--auth", "--token", "S3cret", "--cors-origin", pages.origin) as gateway:
        page = browser.new_page()
        page.goto(f"{pages.origin}/?gateway=http://127.0.0.1:{gateway.port}")
        page.wait_for_function("window.ready === true")
        bad = f"ws://127.0.0.1:{free_tcp_port()}/ws"
        result = page.evaluate("([url, bad]) => refusals(url, bad)", [gateway.url, bad])
        assert result == {"auth": "AUTH_FAILED", "authIsWingmanError": True, "unreachable": "CONNECTION_FAILED"}


def test_the_browser_example_page(pages: FileServer, browser: BrowserContext, tmp_path: Path) -> None:
    # The page comes from another origin than the gateway's: it must be listed.
    with running_gateway("--cors-origin", pages.origin) as gateway:
        example_page(gateway, pages, browser, tmp_path)


def example_page(gateway: GatewayProcess, pages: FileServer, browser: BrowserContext, tmp_path: Path) -> None:
    agent = Node(gateway.url)
    try:
        assert agent.register("model")["type"] == "ack" and agent.join("lobby")["type"] == "ack"
        page = browser.new_page()
        page.goto(f"{pages.origin}/room.html?url={gateway.url}&name=ada&room=lobby")
        page.wait_for_function("document.body.dataset.ready === 'yes'")
        assert "ada in lobby (websocket)" in page.inner_text("#status")
        page.fill("#text", "what is 2+2?")
        page.press("#text", "Enter")
        said = agent.recv_type("broadcast")
        assert said["payload"] == "what is 2+2?" and said["fromName"] == "ada"
        for payload in (
            {"type": "agent-start", "agent": "model", "prompt": "what is 2+2?", "timestamp": 1},
            {"type": "agent-stream", "chunk": "It is ", "timestamp": 2},
            {"type": "agent-stream", "chunk": {"event": "on_chat_model_stream", "data": {"chunk": "four."}},
             "timestamp": 3},
            {"type": "tool-start", "toolName": "calc", "toolInput": {"x": "2+2"}, "timestamp": 4},
            {"type": "agent-complete", "result": {"response": "It is four."}, "timestamp": 5},
        ):
            assert agent.request("broadcast", {"groupId": "lobby", "message": payload})["type"] == "ack"
        page.wait_for_function("document.getElementById('log').innerText.includes('model done')")
        log = page.inner_text("#log")
        assert "ada: what is 2+2?" in log and "model: It is four." in log and "⚙ model runs calc" in log
        page.screenshot(path=str(tmp_path / "room.png"))
    finally:
        agent.close()
