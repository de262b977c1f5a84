"""The console's Admin view against the real server API: disconnecting a
node, publishing as the gateway and closing a room work with the admin
credential, and are refused (and change nothing) without it or with a
wrong one."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from playwright.sync_api import BrowserContext, expect

from harness.browserkit import chromium
from harness.consolekit import ConsolePage
from harness.support import Node, expect_closed, running_gateway

ADMIN = "console-admin-Xq4v8Rr2mT7c-credential"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[BrowserContext]:
    with chromium(tmp_path / "chromium-profile") as context:
        yield context


def member(gateway_url: str, name: str, room: str) -> Node:
    node = Node(gateway_url)
    assert node.register(name)["type"] == "ack"
    assert node.join(room)["type"] == "ack"
    return node


def give_admin(console: ConsolePage, credential: str) -> None:
    page = console.page
    if page.locator("#connection").is_hidden():
        page.click("#connection-toggle")
    page.fill("#admin", credential)
    page.click("#connect-form button[type=submit]")
    expect(page.locator("#connection")).to_be_hidden()


def test_admin_actions_need_the_credential(tmp_path: Path, browser: BrowserContext) -> None:
    credential = tmp_path / "admin-token"
    credential.write_text(ADMIN + "\n")
    credential.chmod(0o600)
    with running_gateway("--admin-token-file", str(credential), "--name", "gw-admin") as gateway:
        victim = member(gateway.url, "victim", "ops")
        bystander = member(gateway.url, "bystander", "ops")
        console = ConsolePage(browser, f"http://127.0.0.1:{gateway.port}", "#/rooms/ops")
        console.connected()
        page = console.page
        expect(console.member("victim")).to_be_visible()
        bystander.recv_type("presence")  # the console joined
        # /stats needs the admin credential here: the overview says so.
        page.evaluate("() => { location.hash = '#/'; }")
        expect(page.locator(".overview .note")).to_contain_text("need a credential")

        page.evaluate("() => { location.hash = '#/admin'; }")
        result = page.locator(".admin .result")
        disconnect = page.locator("form[data-action=disconnect]")
        disconnect.locator("select").select_option(label=f"victim ({victim.node_id})")
        disconnect.locator("button").click()
        expect(result).to_have_text(
            "disconnect failed: HTTP 401 AUTH_FAILED: this endpoint needs the admin credential "
            "(Authorization: Bearer) (give the admin credential under Connection)"
        )
        give_admin(console, "not-the-credential")
        page.evaluate("() => { location.hash = '#/admin'; }")
        disconnect.locator("select").select_option(label=f"victim ({victim.node_id})")
        disconnect.locator("button").click()
        expect(result).to_have_text(
            "disconnect failed: HTTP 403 FORBIDDEN: the credential presented is not the admin credential"
        )
        assert victim.request("ping")["type"] == "pong"  # refused: nothing happened
        expect(disconnect.locator("select option", has_text="victim")).to_have_count(1)

        give_admin(console, ADMIN)
        page.evaluate("() => { location.hash = '#/admin'; }")
        expect(disconnect.locator("select option", has_text="(websocket,")).to_have_count(3)  # /stats now answers
        disconnect.locator("select").select_option(value=victim.node_id)
        page.fill("#admin-node-reason", "misbehaving in tests")
        disconnect.locator("button").click()
        expect(result).to_contain_text("disconnect: done")
        expect_closed(victim)
        left = bystander.recv_type("presence")
        assert (left["payload"]["event"], left["payload"]["name"], left["payload"]["reason"]) == (
            "left", "victim", "misbehaving in tests")

        publish = page.locator("form[data-action=publish]")
        publish.locator("select").select_option("ops")
        page.fill("#admin-message", '{"notice": "maintenance at noon"}')
        page.check("#admin-json")
        publish.locator("button").click()
        expect(result).to_contain_text("publish: done")
        heard = bystander.recv_type("broadcast")
        assert (heard["payload"], heard["fromName"], heard["fromNodeId"]) == (
            {"notice": "maintenance at noon"}, "gw-admin", None)

        close = page.locator("form[data-action=close]")
        close.locator("select").select_option("ops")
        page.fill("#admin-close-reason", "wrapping up")
        close.locator("button").click()
        expect(result).to_contain_text("close room: done")
        closed = bystander.recv_type("presence")
        assert (closed["payload"]["event"], closed["payload"]["reason"]) == ("closed", "wrapping up")

        page.evaluate("() => { location.hash = '#/rooms/ops'; }")
        expect(page.locator(".room .state")).to_have_text("This room was closed by the gateway.")
        expect(page.locator(".entry.json pre")).to_contain_text("maintenance at noon")
        expect(page.locator(".notice .what").last).to_have_text("the room was closed by the gateway: wrapping up")
        expect(page.locator("#compose-text")).to_be_disabled()
        bystander.close()
        console.no_problems()
