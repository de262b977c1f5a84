"""Where the clients find a gateway's other addresses: /health, the bridge, /ws."""

from __future__ import annotations

import pytest

from wingman_gateway.client.probe import health_url
from wingman_gateway.protocol.urls import as_websocket_url, bridge_base


@pytest.mark.parametrize("target, url", [
    ("gw", "http://gw:3000/health"),  # a bare host: the gateway's default port
    ("gw:4000", "http://gw:4000/health"),
    ("[::1]:3000", "http://[::1]:3000/health"),
    ("ws://gw:3001/ws", "http://gw:3001/health"),
    ("wss://gw.example.com/ws", "https://gw.example.com/health"),  # behind a proxy on 443
    ("wss://gw.example.com/wingman/ws", "https://gw.example.com/wingman/health"),
    ("http://gw:5/", "http://gw:5/health"),
    ("https://gw:5/bridge/", "https://gw:5/health"),
    ("unix:/run/wingman.sock", "unix:/run/wingman.sock"),
])
def test_health_is_asked_where_the_gateway_is(target: str, url: str) -> None:
    assert health_url(target) == url


def test_bridge_and_websocket_keep_the_prefix() -> None:
    assert bridge_base("wss://gw.example.com/wingman/ws") == "https://gw.example.com/wingman/bridge"
    assert as_websocket_url("https://gw.example.com/wingman/") == "wss://gw.example.com/wingman/ws"
