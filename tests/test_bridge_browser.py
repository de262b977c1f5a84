"""A real browser on the HTTP bridge: headless Chromium loads a page served
here that joins a room with ``fetch`` + ``EventSource`` and talks with a
Python WebSocket node; a page from an origin not allowed gets nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from playwright.sync_api import BrowserContext, Page

from harness.browserkit import PageServer, chromium
from harness.support import Node, http_get, running_gateway

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>wingman bridge page</title></head>
<body><pre id="out"></pre>
<script>
const GATEWAY = "http://127.0.0.1:%(port)d/bridge";
window.received = [];
window.errors = [];
let secret = null;

async function post(envelope) {
  const headers = {"Content-Type": "application/json"};
  if (secret) headers["X-Wingman-Session"] = secret;
  const response = await fetch(GATEWAY + "/send", {method: "POST", headers, body: JSON.stringify(envelope)});
  return {status: response.status, body: response.status === 204 ? null : await response.json(),
          retryAfter: response.headers.get("Retry-After")};
}

window.joinRoom = async function (name, room) {
  const registered = await post({type: "register", messageId: "r1", payload: {name}});
  secret = registered.body.session;
  const joined = await post({type: "join_group", messageId: "j1",
                             payload: {groupName: room, createIfNotExists: true}});
  // EventSource sends no headers: the session goes in the query.
  const events = new EventSource(GATEWAY + "/sse?session=" + encodeURIComponent(secret));
  events.onmessage = (event) => {
    const envelope = JSON.parse(event.data);
    window.received.push({id: Number(event.lastEventId), envelope});
    document.getElementById("out").textContent += event.data + "\\n";
    if (envelope.type === "ping") post({type: "pong"});
    fetch(GATEWAY + "/ack?after=" + event.lastEventId,
          {method: "POST", headers: {"X-Wingman-Session": secret}});
  };
  events.onerror = () => window.errors.push("event stream error");
  await new Promise((resolve) => { events.onopen = resolve; });
  return {nodeId: registered.body.payload.nodeId, status: registered.status,
          members: joined.body.payload.members.map((m) => m.name)};
};

window.say = async function (room, message) {
  const reply = await post({type: "broadcast", messageId: "b" + Date.now(), payload: {groupId: room, message}});
  return {status: reply.status, recipients: reply.body.payload.recipients};
};

window.tryRegister = async function () {
  try {
    await post({type: "register", messageId: "x", payload: {name: "intruder"}});
    return "answered";
  } catch (error) {
    return "refused: " + error.name;
  }
};
</script></body></html>
"""


@pytest.fixture
def pages() -> Iterator[tuple[PageServer, PageServer]]:
    allowed, other = PageServer(), PageServer()
    yield allowed, other
    allowed.stop()
    other.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[BrowserContext]:
    with chromium(tmp_path / "chromium-profile") as context:
        yield context


def open_page(browser: BrowserContext, server: PageServer, gateway_port: int) -> Page:
    server.page = (PAGE % {"port": gateway_port}).encode("utf-8")
    page = browser.new_page()
    page.goto(server.origin + "/")
    return page


def test_a_browser_page_joins_a_room_over_fetch_and_event_source(
    pages: tuple[PageServer, PageServer], browser: BrowserContext, tmp_path: Path
) -> None:
    allowed, other = pages
    with running_gateway("--cors-origin", allowed.origin) as gateway:
        ws = Node(gateway.url)
        try:
            assert ws.register("python")["type"] == "ack" and ws.join("web")["type"] == "ack"
            page = open_page(browser, allowed, gateway.port)
            joined = page.evaluate("joinRoom('browser', 'web')")
            assert joined["status"] == 200 and set(joined["members"]) == {"python", "browser"}
            presence = ws.recv_type("presence")
            assert presence["payload"]["name"] == "browser" and presence["payload"]["nodeId"] == joined["nodeId"]

            # Python -> browser, over the event stream.
            ws.request("broadcast", {"groupId": "web", "message": {"text": "hello browser", "n": [1, 2]}})
            page.wait_for_function("window.received.some(r => r.envelope.type === 'broadcast')")
            [heard] = page.evaluate("window.received.filter(r => r.envelope.type === 'broadcast')")
            assert heard["envelope"]["payload"] == {"text": "hello browser", "n": [1, 2]}
            assert heard["envelope"]["fromNodeId"] == ws.node_id and heard["id"] >= 1

            # Browser -> Python, over fetch.
            said = page.evaluate("say('web', {text: 'hello python'})")
            assert said == {"status": 200, "recipients": 1}
            got = ws.recv_type("broadcast")
            assert got["payload"] == {"text": "hello python"} and got["fromName"] == "browser"

            # More, in order, and the page confirmed what it read.
            for n in range(5):
                ws.request("broadcast", {"groupId": "web", "message": {"n": n}})
            page.wait_for_function("window.received.filter(r => r.envelope.type === 'broadcast').length === 6")
            ids = page.evaluate("window.received.map(r => r.id)")
            assert ids == sorted(set(ids))
            assert page.evaluate("window.errors") == []
            page.screenshot(path=str(tmp_path / "bridge-page.png"))

            # A page from an origin not on the list can do nothing.
            stranger = open_page(browser, other, gateway.port)
            assert stranger.evaluate("tryRegister()") == "refused: TypeError"
            status, _, stats = http_get(gateway, "/stats")
            assert status == 200 and "intruder" not in stats
        finally:
            ws.close()

