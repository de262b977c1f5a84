"""The web console in a real Chromium (Debian's, driven by Playwright)
against a real gateway: an agent's streamed answer, people and nodes on
WebSocket and the HTTP bridge talking, presence, the token prompt, the
bridge behind a proxy that refuses WebSocket, text that stays text, the
keyboard, and screenshots at laptop and phone sizes."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from playwright.sync_api import BrowserContext, expect

from harness.bridgekit import ProxyProcess, bridge_node
from harness.browserkit import chromium
from harness.clusterkit import RedisServer, start_member, wait_formed
from harness.consolekit import LAPTOP, PHONE, ConsolePage, overflows, screenshot_dir, send_at_once
from harness.support import GatewayProcess, Node, free_tcp_port, raw_websocket, running_gateway, wait_totals
from wingman_gateway.agentstream import event


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[BrowserContext]:
    with chromium(tmp_path / "chromium-profile") as context:
        yield context


def origin(gateway: GatewayProcess) -> str:
    return f"http://127.0.0.1:{gateway.port}"


def agent_node(gateway: GatewayProcess, name: str, room: str, **extra: Any) -> Node:
    node = Node(gateway.url)
    assert node.register(name, **extra)["type"] == "ack"
    assert node.join(room)["type"] == "ack"
    return node


def say(node: Node, room: str, message: Any) -> None:
    node.send({"type": "broadcast", "payload": {"groupId": room, "message": message}})


def stream_answer(node: Node, room: str, tokens: list[str]) -> None:
    """One agent turn: start, half the tokens, a tool call, the rest, complete."""
    half = len(tokens) // 2
    say(node, room, event("agent-start", agent="coder", prompt="Review the auth code"))
    say(node, room, event("agent-stream", chunk={"event": "on_chat_model_stream", "data": {"chunk": tokens[0]}}))
    for token in tokens[1:half]:
        say(node, room, event("agent-stream", chunk=token))
    say(node, room, event("tool-start", toolName="command_execute", toolInput={"command": "cat src/auth.ts"}))
    say(node, room, event("tool-end", toolName="command_execute", toolOutput="export function login() {}"))
    for token in tokens[half:]:
        say(node, room, event("agent-stream", chunk={"content": token}))
    say(node, room, event("agent-complete", result={"response": "".join(tokens)}))


def test_an_agent_answer_streams_into_one_bubble(gateway: GatewayProcess, browser: BrowserContext) -> None:
    console = ConsolePage(browser, origin(gateway), "#/rooms/review")
    console.connected()
    agent = agent_node(gateway, "coder-node", "review", agentName="coder", capabilities=["code", "review"])
    page = console.page
    expect(console.member("coder-node")).to_contain_text("code")
    expect(console.member("coder-node")).to_contain_text("review")
    expect(console.member("coder-node")).to_contain_text("websocket")  # from /stats

    say(agent, "review", event("agent-start", agent="coder", prompt="Review the auth code"))
    say(agent, "review", event("agent-stream", chunk="The auth"))
    bubble = page.locator(".answer")
    expect(bubble.locator(".text")).to_have_text("The auth")
    expect(bubble.locator(".state")).to_have_text("streaming")
    expect(bubble).to_have_attribute("aria-busy", "true")
    expect(bubble.locator(".prompt")).to_have_text("Review the auth code")
    say(agent, "review", event("agent-stream", chunk=" code"))
    expect(bubble.locator(".text")).to_have_text("The auth code")  # token by token, same bubble

    tokens = ["The", " auth", " code", " looks", " fine", "."]
    page.evaluate("() => document.querySelector('.stream').replaceChildren()")
    stream_answer(agent, "review", tokens)
    bubble = page.locator(".answer")
    expect(bubble.locator(".state")).to_have_text("complete")
    expect(bubble).to_have_count(1)
    expect(bubble.locator(".text")).to_have_text("The auth code looks fine.")
    assert bubble.get_attribute("aria-busy") is None
    step = bubble.locator("details.step")
    expect(step).to_have_count(1)
    expect(step.locator("summary")).to_contain_text("command_execute")
    expect(step.locator("summary .badge")).to_have_text("done")
    assert step.evaluate("(node) => node.open") is False  # collapsed until asked
    step.locator("summary").click()
    expect(step.locator("pre").first).to_have_text(json.dumps({"command": "cat src/auth.ts"}, separators=(",", ":")))
    expect(step.locator("pre").last).to_have_text("export function login() {}")

    say(agent, "review", event("agent-start", agent="coder", prompt="And the tests?"))
    say(agent, "review", event("agent-stream", chunk="Running"))
    say(agent, "review", event("agent-error", error="model overloaded", stack="Traceback: ..."))
    failed = page.locator(".answer").nth(1)
    expect(failed.locator(".state")).to_have_text("error")
    expect(failed.locator(".error-text")).to_have_text("model overloaded")
    expect(failed.locator(".text")).to_have_text("Running")
    expect(page.locator(".answer")).to_have_count(2)
    agent.close()
    console.no_problems()


def test_a_person_talks_with_websocket_and_bridge_nodes(gateway: GatewayProcess, browser: BrowserContext) -> None:
    ws = agent_node(gateway, "ws-agent", "lobby")
    bridge = bridge_node(gateway, "bridge-agent", "lobby")
    console = ConsolePage(browser, origin(gateway), "#/rooms/lobby")
    console.connected()
    expect(console.member("ws-agent")).to_contain_text("websocket")
    expect(console.member("bridge-agent")).to_contain_text("http")
    name = console.page.locator("#name").input_value()

    console.send("hello swarm")
    heard = ws.recv_type("broadcast")
    assert (heard["payload"], heard["fromName"], heard["groupName"]) == ("hello swarm", name, "lobby")
    assert bridge.next_of("broadcast")["payload"] == "hello swarm"
    expect(console.page.locator(".chat.mine .body")).to_have_text("hello swarm")

    console.send("just for you", to="bridge-agent")
    direct = bridge.next_of("direct")
    assert (direct["payload"], direct["fromName"]) == ("just for you", name)

    hostile = "<script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\"><b>bold?</b>"
    say(ws, "lobby", hostile)
    line = console.page.locator(".chat:not(.mine)").last
    expect(line.locator(".body")).to_have_text(hostile)
    expect(line.locator(".who")).to_have_text("ws-agent")
    report = {"kind": "report", "items": [1, 2.5, None], "ok": True, "note": "long enough to be laid out on lines"}
    say(ws, "lobby", report)
    expect(console.page.locator(".entry.json pre").last).to_have_text(json.dumps(report, indent=2))
    say(ws, "lobby", {"progress": 3})  # short: one line
    expect(console.page.locator(".entry.json pre").last).to_have_text('{"progress":3}')
    assert console.page.evaluate("() => window.__pwned") is None
    assert console.page.locator(".stream script, .stream img, .stream b").count() == 0

    bridge.request("unregister")
    expect(console.member("bridge-agent")).to_have_count(0)
    expect(console.page.locator(".notice .what").last).to_have_text("bridge-agent left (unregistered)")
    ws.close()
    expect(console.member("ws-agent")).to_have_count(0)
    console.no_problems()


def test_presence_in_a_batch(gateway: GatewayProcess, browser: BrowserContext) -> None:
    """Joins and departures in one turn of the gateway arrive as one batch notice."""
    console = ConsolePage(browser, origin(gateway), "#/rooms/lobby")
    console.connected()
    watcher = agent_node(gateway, "watcher", "lobby")
    expect(console.member("watcher")).to_be_visible()
    storm = raw_websocket(gateway.port, 65536)
    send_at_once(storm, [
        {"type": "register", "payload": {"name": "storm", "capabilities": ["chaos"]}},
        {"type": "join_group", "payload": {"groupName": "lobby"}},
        {"type": "leave_group", "payload": {"groupName": "lobby"}},
        {"type": "join_group", "payload": {"groupName": "lobby"}},
    ])
    batch = watcher.recv(5)
    assert batch["type"] == "presence" and batch["payload"]["event"] == "batch", batch
    assert [one["event"] for one in batch["payload"]["events"]] == ["joined", "left", "joined"]
    expect(console.member("storm")).to_contain_text("chaos")
    expect(console.page.locator(".notice .what")).to_contain_text(
        ["watcher joined", "storm joined", "storm left (left)", "storm joined"])
    storm.close()
    expect(console.member("storm")).to_have_count(0)
    watcher.close()
    console.no_problems()


def test_a_clusters_gateways(browser: BrowserContext) -> None:
    """On a clustered gateway the overview lists every gateway, and a room
    holds the nodes of all of them."""
    redis = RedisServer()
    gateways: list[GatewayProcess] = []
    try:
        gateways = [start_member(redis.url, "east"), start_member(redis.url, "west")]
        wait_formed(gateways)
        west = agent_node(gateways[1], "west-agent", "lobby")
        console = ConsolePage(browser, origin(gateways[0]), "#/rooms/lobby")
        console.connected()
        expect(console.member("west-agent")).to_be_visible()
        say(west, "lobby", "from the west")
        expect(console.page.locator(".chat .body").last).to_have_text("from the west")
        console.send("from the east")
        assert west.recv_type("broadcast")["payload"] == "from the east"
        console.page.evaluate("() => { location.hash = '#/'; }")
        listed = console.page.locator(".gateways li")
        expect(listed).to_have_count(2)
        expect(listed.filter(has_text="this one")).to_contain_text("east")
        expect(listed.filter(has_text="west")).to_contain_text("west 1 node")
        console.page.set_viewport_size(LAPTOP)
        console.page.screenshot(path=str(screenshot_dir() / "overview-cluster-laptop.png"))
        west.close()
        console.no_problems()
    finally:
        for gateway in gateways:
            gateway.stop()
        redis.stop()


def test_behind_a_proxy_that_refuses_websocket(browser: BrowserContext) -> None:
    port = free_tcp_port()
    proxy = ProxyProcess(port)
    try:
        with running_gateway(
            "--listen", f"tcp:{port}:interface=127.0.0.1", "--cors-origin", f"http://127.0.0.1:{proxy.port}"
        ) as gateway:
            console = ConsolePage(browser, f"http://127.0.0.1:{proxy.port}", "#/rooms/lobby")
            console.connected("http bridge")
            assert proxy.saw(r"refused GET /ws")
            ws = agent_node(gateway, "ws-agent", "lobby")
            expect(console.member("ws-agent")).to_be_visible()
            say(ws, "lobby", "through the proxy?")
            expect(console.page.locator(".chat .body").last).to_have_text("through the proxy?")
            console.send("yes, over the bridge")
            assert ws.recv_type("broadcast")["payload"] == "yes, over the bridge"
            me = console.member(console.page.locator("#name").input_value())
            expect(me).to_contain_text("http")
            ws.close()
            console.no_problems()
    finally:
        proxy.stop()


@pytest.mark.gateway("--max-name-length", "16", "--max-rooms-per-node", "1", "--max-payload", "2048")
def test_refusals_are_shown_and_change_nothing(gateway: GatewayProcess, browser: BrowserContext) -> None:
    long_name = "far-too-long-a-name"
    console = ConsolePage(browser, origin(gateway), f"#/rooms/{long_name}")  # a deep link
    console.connected()
    page = console.page
    expect(page.locator("main .problem")).to_have_text(
        f"cannot join {long_name}: INVALID_REQUEST: 'groupName' is longer than 16 characters")
    page.evaluate("() => { location.hash = '#/rooms'; }")
    page.fill("#room-name", "one")
    page.click(".join-form button")
    expect(page.locator(".room-head h2")).to_have_text("one")
    page.evaluate("() => { location.hash = '#/rooms'; }")
    page.fill("#room-name", "two")
    page.click(".join-form button")
    expect(page.locator(".rooms .problem")).to_have_text(
        "cannot join two: FORBIDDEN: a node may be in at most 1 rooms")
    page.evaluate("() => { location.hash = '#/rooms/one'; }")  # still in "one", and it still works
    agent = agent_node(gateway, "agent", "one")
    me = console.member(page.locator("#name").input_value()).get_attribute("data-node")
    page.fill("#compose-text", "x" * 3000)
    page.click(".compose button[type=submit]")
    expect(page.locator(".room .refusal")).to_have_text(
        re.compile(r"^not sent: PAYLOAD_TOO_LARGE: message of 30\d\d bytes exceeds the limit of 2048 bytes$"))
    expect(page.locator("#compose-text")).to_have_value("x" * 3000)  # kept, to shorten
    console.send("after the refusals")
    expect(page.locator(".room .refusal")).to_have_text("")
    assert console.member(page.locator("#name").input_value()).get_attribute("data-node") == me  # same connection
    assert agent.recv_type("broadcast")["payload"] == "after the refusals"
    agent.close()
    console.no_problems()


def test_the_console_reconnects_and_rejoins(browser: BrowserContext) -> None:
    """The gateway restarts on the same port: the console says so, comes back
    by itself, rejoins its room and its stream goes on."""
    port = free_tcp_port()
    listen = ("--listen", f"tcp:{port}:interface=127.0.0.1")
    with running_gateway(*listen) as first:
        console = ConsolePage(browser, origin(first), "#/rooms/lobby")
        console.connected()
        expect(console.page.locator(".members li")).to_have_count(1)
        first.stop()
        expect(console.page.locator("#connection-toggle")).to_have_attribute("data-state", "reconnecting")
        expect(console.page.locator(".room .state")).to_have_text("connection: reconnecting")
    with running_gateway(*listen) as second:
        console.connected(timeout=40000)
        agent = agent_node(second, "after-restart", "lobby")
        expect(console.member("after-restart")).to_be_visible()
        say(agent, "lobby", "still here?")
        expect(console.page.locator(".chat .body").last).to_have_text("still here?")
        console.send("yes")
        assert agent.recv_type("broadcast")["payload"] == "yes"
        agent.close()
    console.no_problems()


def test_the_token_prompt_and_where_the_token_is_kept(browser: BrowserContext) -> None:
    with running_gateway("--auth", "--token", "S3cret") as gateway:
        console = ConsolePage(browser, origin(gateway), "#/rooms/lobby")
        page = console.page
        expect(page.locator("#token")).to_be_visible()
        expect(page.locator("#connect-note")).to_have_text("This gateway requires a token.")
        assert wait_totals(gateway, 0, 0)["totalNodes"] == 0
        page.fill("#token", "wrong")
        page.click("#connect-form button[type=submit]")
        expect(page.locator("#connect-note")).to_contain_text("refused the token")
        expect(page.locator("#connection-toggle")).to_have_attribute("data-state", "offline")

        page.fill("#token", "S3cret")
        page.click("#connect-form button[type=submit]")
        console.connected()
        expect(page.locator(".room-head h2")).to_have_text("lobby")
        expect(page.locator(".members li")).to_have_count(1)
        assert "S3cret" not in page.url
        assert page.evaluate("() => JSON.stringify(sessionStorage)") == "{}"
        page.goto(f"{origin(gateway)}/#/")  # leave, and come back: the token was in memory only
        page.goto(f"{origin(gateway)}/console/#/")
        expect(page.locator("#token")).to_be_visible()
        expect(page.locator("#token")).to_have_value("")

        page.fill("#token", "S3cret")
        page.check("#remember")
        page.click("#connect-form button[type=submit]")
        console.connected()
        assert "S3cret" in page.evaluate("() => sessionStorage.getItem('wingman-console')")
        page.reload()
        console.connected()  # remembered for this tab
        expect(page.locator("[data-figure=nodes]")).to_have_text("1")  # /stats with the token
        console.no_problems()


def test_the_keyboard_reaches_every_control(gateway: GatewayProcess, browser: BrowserContext) -> None:
    ws = agent_node(gateway, "ws-agent", "lobby")
    console = ConsolePage(browser, origin(gateway), "#/rooms/lobby")
    console.connected()
    page = console.page
    expect(console.member("ws-agent")).to_be_visible()
    page.locator("body").focus()
    reached = []
    for _ in range(20):
        page.keyboard.press("Tab")
        reached.append(page.evaluate(
            "() => { const e = document.activeElement; return e.id || e.getAttribute('aria-label') || e.textContent.trim(); }"
        ))
    for control in ("Overview", "Rooms", "Admin", "connection-toggle", "Leave", "direct message to ws-agent",
                    "compose-to", "compose-text", "Send"):
        assert control in reached, reached
    page.focus("#compose-text")
    page.keyboard.type("typed, not clicked")
    page.keyboard.press("Enter")
    assert ws.recv_type("broadcast")["payload"] == "typed, not clicked"
    ws.close()
    console.no_problems()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_screenshots_at_laptop_and_phone_sizes(gateway: GatewayProcess, browser: BrowserContext, scheme: str) -> None:
    shots = screenshot_dir()
    agent = agent_node(gateway, "coder-node", "review", agentName="coder", capabilities=["code"])
    helper = agent_node(gateway, "search-bot", "review", capabilities=["search", "web"])
    console = ConsolePage(browser, origin(gateway), "#/rooms/review")
    page = console.page
    page.emulate_media(color_scheme=scheme)
    console.connected()
    say(helper, "review", "Can someone review src/auth.ts before the release?")
    stream_answer(agent, "review", ["The", " login", " flow", " checks", " the", " token", " expiry", " and",
                                    " refuses", " reused", " nonces;", " it", " looks", " fine."])
    say(helper, "review", {"kind": "report", "coverage": 0.91, "files": ["src/auth.ts", "src/token.ts"]})
    expect(page.locator(".answer .state")).to_have_text("complete")
    console.send("Thanks, merging it.")
    assert helper.join("build")["type"] == "ack"
    for number in range(24):  # some traffic for the chart, over a few of its samples (elsewhere)
        say(helper, "build", {"progress": number})
        time.sleep(0.25)
    for size_name, size in (("laptop", LAPTOP), ("phone", PHONE)):
        page.set_viewport_size(size)
        page.evaluate("() => { location.hash = '#/rooms/review'; }")
        expect(page.locator(".answer .state")).to_have_text("complete")
        assert overflows(page) == 0, size_name
        for control in ("#compose-text", ".compose button[type=submit]"):
            box = page.locator(control).bounding_box()
            assert box and box["y"] + box["height"] <= size["height"] and box["x"] + box["width"] <= size["width"]
        page.screenshot(path=str(shots / f"room-{size_name}-{scheme}.png"))
        page.evaluate("() => { location.hash = '#/'; }")
        expect(page.locator("[data-figure=nodes]")).to_have_text("3")
        page.wait_for_function("() => Number(document.querySelector('.chart').dataset.samples) >= 3", timeout=15000)
        assert overflows(page) == 0, size_name
        page.screenshot(path=str(shots / f"overview-{size_name}-{scheme}.png"))
        for view, ready in (("rooms", ".room-list li[data-room=review]"), ("admin", "form[data-action=publish]")):
            page.evaluate(f"() => {{ location.hash = '#/{view}'; }}")
            expect(page.locator(ready)).to_be_visible()
            assert overflows(page) == 0, (view, size_name)
            page.screenshot(path=str(shots / f"{view}-{size_name}-{scheme}.png"))
    print(f"screenshots in {shots}")
    agent.close()
    helper.close()
    console.no_problems()
