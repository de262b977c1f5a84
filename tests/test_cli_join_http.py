"""``wingman gateway join --transport http`` and ``--auto-transport``: the real
command as a node over the HTTP bridge, next to a WebSocket node."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.bridgekit import ProxyProcess
from harness.cli_support import LineProcess, converse, wingman
from harness.support import GatewayProcess, Node


def stats_transports(gateway: GatewayProcess) -> dict[str, str]:
    from harness.support import http_get

    status, _, body = http_get(gateway, "/stats")
    assert status == 200
    return {node["name"]: node["transport"] for node in json.loads(body)["nodes"]["nodes"]}


@pytest.mark.parametrize("url_form", ["ws", "http", "hostport"])
def test_join_over_the_http_bridge(gateway: GatewayProcess, tmp_path: Path, url_form: str) -> None:
    target = {
        "ws": gateway.url,
        "http": f"http://127.0.0.1:{gateway.port}",
        "hostport": f"127.0.0.1:{gateway.port}",
    }[url_form]
    ws = Node(gateway.url)
    cli = LineProcess(tmp_path, "gateway", "join", target, "--transport", "http", "--json",
                      "--name", "term", "--group", "ops")
    try:
        assert ws.register("ws")["type"] == "ack" and ws.join("ops")["type"] == "ack"
        connected = cli.read_until(lambda r: r.get("event") == "connected" and "room" in r)
        assert connected["room"] == "ops"
        assert stats_transports(gateway) == {"ws": "websocket", "term": "http"}
        ws.recv_type("presence")
        converse(cli, ws)
        cli.close_stdin()  # end of input: the node unregisters and the command ends
        left = ws.recv_type("presence")
        assert left["payload"]["event"] == "left" and left["payload"]["reason"] == "unregistered"
        assert cli.proc.wait(15) == 0
    finally:
        cli.stop()
        ws.close()


@pytest.mark.parametrize("flags", [(), ("--auto-transport",), ("--transport", "auto")])
def test_auto_transport_through_a_proxy_that_refuses_websocket(
    gateway: GatewayProcess, tmp_path: Path, flags: tuple[str, ...]
) -> None:
    """``auto`` is the default; the older ``--auto-transport`` still says the same."""
    proxy = ProxyProcess(gateway.port)
    ws = Node(gateway.url)
    cli = LineProcess(tmp_path, "gateway", "join", f"127.0.0.1:{proxy.port}", *flags, "--json",
                      "--name", "term", "--group", "ops")
    try:
        assert ws.register("ws")["type"] == "ack" and ws.join("ops")["type"] == "ack"
        assert cli.read()["event"] == "connected"
        assert proxy.saw(r"^refused GET /ws$")
        assert stats_transports(gateway) == {"ws": "websocket", "term": "http"}
        ws.recv_type("presence")
        converse(cli, ws)
    finally:
        cli.stop()
        ws.close()
        proxy.stop()


def test_join_transport_choices_are_checked(tmp_path: Path) -> None:
    result = wingman(tmp_path, "gateway", "join", "--transport", "smoke-signals")
    assert result.returncode == 2
    assert "invalid choice: 'smoke-signals' (choose from 'websocket', 'http', 'auto')" in result.stderr
    help_text = wingman(tmp_path, "gateway", "join", "--help").stdout
    assert "--transport {websocket,http,auto}" in help_text and "--auto-transport" in help_text
