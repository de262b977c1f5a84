"""The pure parts of discovery: names, TXT entries, settings, tailnet devices."""

from __future__ import annotations

import pytest

from wingman_gateway.discovery.records import (
    BadAnnouncement,
    from_announcement,
    gateway_urls,
    instance_name,
    txt_record,
)
from wingman_gateway.discovery.settings import DiscoverySettings, parse_discovery
from wingman_gateway.discovery.tailscale import candidates, devices_from_api, devices_from_status


def test_instance_names_fit_one_dns_label() -> None:
    assert instance_name("desk") == "desk"
    long = "é" * 40  # 80 bytes of UTF-8
    cut = instance_name(long)
    assert len(cut.encode()) <= 63 and cut == "é" * 31  # never half a character
    assert len(instance_name(long, "-12").encode()) <= 63 and instance_name(long, "-12").endswith("-12")
    assert instance_name("   ") == "wingman-gateway"


def test_txt_record_order_and_optional_ssh() -> None:
    txt = txt_record(version="1.2", auth_required=True, secure=True, bridge=False, ssh_port=2222)
    assert list(txt.items()) == [("txtvers", "1"), ("version", "1.2"), ("auth", "required"),
                                 ("transport", "wss"), ("path", "/ws"), ("bridge", "no"), ("ssh", "2222")]
    assert "ssh" not in txt_record(version="1", auth_required=False, secure=False, bridge=True, ssh_port=None)


def test_announcements_are_read_leniently_and_checked() -> None:
    found = from_announcement("gw", 4000, "host.local.", ["fe80::1", "fd00::2", "10.0.0.2"],
                              {b"TXTVERS": b"1", b"txtvers": b"2", b"auth": None, b"path": b"/ws"})
    assert found.urls == ("ws://10.0.0.2:4000/ws", "ws://[fd00::2]:4000/ws", "ws://[fe80::1]:4000/ws")
    assert found.txt["txtvers"] == "1" and found.txt["auth"] == "" and found.auth == "unknown"
    assert found.host == "host.local"
    with pytest.raises(BadAnnouncement, match="no address"):
        from_announcement("gw", 4000, None, [], {b"txtvers": b"1"})
    with pytest.raises(BadAnnouncement, match="bad path"):
        from_announcement("gw", 4000, None, ["10.0.0.2"], {b"txtvers": b"1", b"path": b"ws"})
    assert gateway_urls(["desk.example.ts.net."], 3000, secure=True) == ["wss://desk.example.ts.net:3000/ws"]


def test_discovery_setting_forms() -> None:
    assert parse_discovery("mdns, tailscale,mdns").methods == ("mdns", "tailscale")
    assert parse_discovery(["tailscale"]).methods == ("tailscale",)
    object_form = parse_discovery({"enabled": True, "method": "mdns", "name": "My Gateway",
                           "tailscale": {"apiKey": "k", "tags": ["wingman", "tag:x"]}})
    assert object_form == DiscoverySettings(methods=("mdns",), name="My Gateway", tags=("tag:wingman", "tag:x"),
                                    api_key="k")
    assert parse_discovery({"enabled": False, "method": "mdns"}).methods == ()
    for bad, message in ((7, "expected mdns and/or tailscale"), ("mdns,smoke", "unknown discovery method"),
                         ({"name": ""}, "name: expected a non-empty string"),
                         ({"tailscale": []}, "tailscale: expected an object"),
                         ({"tailscale": {"apiKey": "k", "key": 1}}, "tailscale: unknown key 'key'")):
        with pytest.raises(ValueError, match=message):
            parse_discovery(bad)


def test_devices_from_both_sources_and_the_filter() -> None:
    status = {
        "Self": {"HostName": "me", "DNSName": "me.ts.net.", "TailscaleIPs": ["100.64.0.1"]},
        "Peer": {
            "a": {"HostName": "a", "DNSName": "a.ts.net.", "TailscaleIPs": ["fd7a::2", "100.64.0.2"],
                  "Online": True, "Tags": ["tag:wingman"]},
            "b": {"HostName": "b", "TailscaleIPs": ["100.64.0.3"], "Online": False, "Tags": ["tag:wingman"]},
            "c": {"HostName": "c", "TailscaleIPs": ["100.64.0.4/32"], "Online": True},
        },
    }
    devices = devices_from_status(status)
    me, a, b, c = devices
    assert me.is_self and me.online and me.dns_name == "me.ts.net"  # Self without Online is online
    assert a.ips == ("100.64.0.2", "fd7a::2") and not b.online and c.ips == ("100.64.0.4",)
    assert [d.host_name for d in candidates(devices)] == ["me", "a", "c"]
    assert [d.host_name for d in candidates(devices, ["wingman"])] == ["a"]
    api = devices_from_api([{"hostname": "x", "addresses": ["100.64.0.9"], "connectedToControl": False},
                            {"hostname": "y", "name": "y.ts.net", "addresses": ["100.64.0.8"]}, 5])
    assert [(d.host_name, d.online) for d in api] == [("x", False), ("y", True)]
