"""mDNS/DNS-SD for real: gateways, ``wingman gateway discover`` and avahi inside a network namespace."""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from harness.background import Background
from harness.cli_support import WINGMAN
from harness.netns import Netns, discover, run_gateway, spawn_run, start_avahi

from wingman_gateway import __version__

SERVICE = "_wingman-gateway._tcp"


@pytest.fixture
def netns() -> Iterator[Netns]:
    with Netns() as namespace:
        yield namespace


def test_gateways_are_discovered_with_their_txt_and_disappear_on_stop(netns: Netns, tmp_path: Path) -> None:
    desk, desk_port = run_gateway(netns, tmp_path / "a", "desk", "--auth", "--token", "s3cret")
    lab, lab_port = run_gateway(netns, tmp_path / "b", "lab bench")
    twin, twin_port = run_gateway(netns, tmp_path / "c", "desk")  # the name is taken: resolved, not fatal
    twin.wait_for(r"mdns: the name 'desk' is taken on this network; announced as 'desk-2'")

    started = time.monotonic()
    result = discover(netns, "--json", "--verbose")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    found = {g["name"]: g for g in json.loads(result.stdout)}
    assert sorted(found) == ["desk", "desk-2", "lab bench"]
    assert elapsed < 15, elapsed  # the default --timeout is 5000 ms; generous bound for a loaded machine
    for name, port, auth in (("desk", desk_port, "required"), ("lab bench", lab_port, "optional"),
                             ("desk-2", twin_port, "optional")):
        gateway = found[name]
        assert gateway["urls"] == [f"ws://127.0.0.1:{port}/ws"]
        assert gateway["addresses"] == ["127.0.0.1"] and gateway["port"] == port
        assert gateway["auth"] == auth and gateway["version"] == __version__
        txt = gateway["txt"]
        assert list(txt)[:5] == ["txtvers", "version", "auth", "transport", "path"]
        assert txt["txtvers"] == "1" and txt["version"] == __version__ and txt["auth"] == auth
        assert txt["transport"] == "ws" and txt["path"] == "/ws" and txt["bridge"] in ("yes", "no")
        assert "ssh" not in txt  # no SSH server runs
    assert "s3cret" not in result.stdout + result.stderr

    text = discover(netns, "--timeout", "3000")
    assert text.returncode == 0
    assert "found 3 gateways on the LAN (mDNS):" in text.stdout
    assert f"desk  (wingman-gateway {__version__}, auth required, via mdns)" in text.stdout
    assert f"    ws://127.0.0.1:{lab_port}/ws" in text.stdout

    first = discover(netns, "--first", "--json")
    assert first.returncode == 0 and len(json.loads(first.stdout)) == 1

    # A browse in progress sees 'lab bench' go: its goodbye packets remove it at once.
    browsing = netns.spawn(WINGMAN, "gateway", "discover", "--json", "--verbose", "--timeout", "6000")
    browsing.wait_for(r"^wingman: found 'lab bench' at ws://127\.0\.0\.1:" + str(lab_port))
    lab.stop()  # SIGTERM: a graceful stop
    assert "mdns: withdrew 'lab bench' (goodbye sent)" in lab.output
    assert browsing.wait_exit(20) == 0
    assert "wingman: 'lab bench' said goodbye" in browsing.output  # as it happened
    assert "'lab bench' said goodbye (it stopped) while browsing" in browsing.output
    after = discover(netns, "--json", "--timeout", "2000")
    assert sorted(g["name"] for g in json.loads(after.stdout)) == ["desk", "desk-2"]


def test_join_auto_discover_exchanges_messages(netns: Netns, tmp_path: Path) -> None:
    home = tmp_path / "home"
    started = netns.run(WINGMAN, "gateway", "start", "--host", "127.0.0.1", "--port", "3000",
                        "--name", "office", "--discovery", "mdns", env={"WINGMAN_HOME": str(home)})
    try:
        assert started.returncode == 0, started.stderr
        assert "Wingman Gateway 'office' running" in started.stdout
        log = home / "logs" / "wingman.log"
        deadline = time.monotonic() + 15
        while "mdns: announced 'office'" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "mdns: announced 'office'" in log.read_text()
        anchor = netns.spawn(WINGMAN, "gateway", "join", "ws://127.0.0.1:3000/ws", "--json",
                             "--name", "anchor", "--group", "lan", stdin=True, env={"WINGMAN_HOME": str(home)})
        anchor.wait_for(r'"event": "connected"')
        before = time.monotonic()
        walker = netns.spawn(WINGMAN, "gateway", "join", "--auto-discover", "--json", "--name", "walker",
                             "--group", "lan", stdin=True, env={"WINGMAN_HOME": str(home)})
        discovered = json.loads(walker.wait_for(r'^\{"type": "local", "event": "discovered".*').group(0))
        assert discovered["name"] == "office" and discovered["url"] == "ws://127.0.0.1:3000/ws"
        walker.wait_for(r'"event": "connected"')
        assert time.monotonic() - before < 15
        anchor.wait_for(r'"type": "presence".*"name": "walker"')
        walker.send_line(json.dumps({"hello": "from walker"}))
        anchor.wait_for(r'"type": "broadcast".*"fromName": "walker".*"payload": \{"hello": "from walker"\}')
        anchor.send_line(json.dumps("hi walker"))
        walker.wait_for(r'"type": "broadcast".*"fromName": "anchor".*"payload": "hi walker"')
    finally:
        stopped = netns.run(WINGMAN, "gateway", "stop", env={"WINGMAN_HOME": str(home)})
        pid_file = home / "gateway.pid"
        if pid_file.exists():  # the stop failed: kill the gateway we started, by pid
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
    assert stopped.returncode == 0, stopped.stdout
    assert "mdns: withdrew 'office' (goodbye sent)" in (home / "logs" / "wingman.log").read_text()


def test_auto_discover_without_a_gateway_says_so(netns: Netns, tmp_path: Path) -> None:
    result = netns.run(WINGMAN, "gateway", "join", "--auto-discover", "--name", "lost",
                       env={"WINGMAN_HOME": str(tmp_path)})
    assert result.returncode == 1
    assert "wingman: no gateway found on the LAN within 5 s" in result.stderr
    empty = discover(netns, "--timeout", "500", "--json")
    assert empty.returncode == 1 and json.loads(empty.stdout) == []


def test_avahi_browse_resolves_the_announcement(netns: Netns, tmp_path: Path) -> None:
    env = start_avahi(netns, tmp_path)
    gateway, port = run_gateway(netns, tmp_path / "home", "avahi check")
    resolved: list[str] = []
    deadline = time.monotonic() + 15
    while not resolved and time.monotonic() < deadline:
        browse = netns.run("avahi-browse", "-rpt", SERVICE, env=env, timeout=30)
        resolved = [line for line in browse.stdout.splitlines()
                    if line.startswith("=;lo;IPv4;avahi\\032check;")]  # -p escapes the space
    assert resolved, browse.stdout + browse.stderr
    fields = resolved[0].split(";")
    assert fields[4] == SERVICE and fields[5] == "local"
    assert fields[7] == "127.0.0.1" and fields[8] == str(port)
    txt = fields[9]
    for entry in ("txtvers=1", f"version={__version__}", "auth=optional", "transport=ws", "path=/ws"):
        assert f'"{entry}"' in txt, txt

    # An independent browser sees the goodbye at once (not after the 2-minute TTL).
    watcher = netns.spawn("avahi-browse", "-rp", SERVICE, env=env)
    watcher.wait_for(r"^=;lo;IPv4;avahi\\032check;")
    gateway.stop()
    watcher.wait_for(r"^-;lo;IPv4;avahi\\032check;", timeout=5)


def test_unusable_announcements_are_set_aside(netns: Netns, tmp_path: Path) -> None:
    """Bogus announcements of our service type never hide or break the real gateway."""
    _, port = run_gateway(netns, tmp_path / "home", "real")
    script = tmp_path / "bogus.py"
    script.write_text(textwrap.dedent(f"""\
        import asyncio, sys, time
        from zeroconf import IPVersion, ServiceInfo, Zeroconf
        zc = Zeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only, use_asyncio=False)
        kind = "{SERVICE}.local."
        def info(name, props, **kw):
            return ServiceInfo(kind, f"{{name}}.{{kind}}", port=kw.get("port", 9), properties=props,
                               server="bogus.local.", parsed_addresses=["127.0.0.1"])
        for i in (info("future", {{"txtvers": "9"}}),
                  info("gopher", {{"txtvers": "1", "transport": "gopher"}}),
                  info("badpath", {{"txtvers": "1", "path": "ws?x=1 y"}}),
                  info("noport", {{"txtvers": "1"}}, port=0),
                  info("binary", {{b"txtvers": b"1", b"version": b"\\xff\\xfe", b"auth": b"maybe"}}, port={port})):
            zc.register_service(i)
        print("registered", flush=True)
        time.sleep(60)
        """))
    netns.spawn(sys.executable, str(script)).wait_for("registered", timeout=30)
    result = discover(netns, "--json", "--verbose")
    assert result.returncode == 0, result.stderr
    found = {g["name"]: g for g in json.loads(result.stdout)}
    assert sorted(found) == ["binary", "real"]
    assert found["binary"]["auth"] == "unknown" and found["binary"]["version"] == "\ufffd\ufffd"
    assert "ignored announcement 'future': unsupported txtvers '9'" in result.stderr
    assert "ignored announcement 'gopher': unknown transport 'gopher'" in result.stderr
    assert "ignored announcement 'badpath': bad path 'ws?x=1 y'" in result.stderr
    assert "ignored announcement 'noport': no port" in result.stderr
    assert found["real"]["urls"] == [f"ws://127.0.0.1:{port}/ws"]


def test_a_busy_mdns_port_is_reported_and_the_gateway_keeps_serving(netns: Netns, tmp_path: Path) -> None:
    holder = netns.spawn(sys.executable, "-c", textwrap.dedent("""\
        import socket, time
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", 5353))  # no SO_REUSEADDR/SO_REUSEPORT: nobody else may bind
        print("holding", flush=True)
        time.sleep(60)
        """))
    holder.wait_for("holding")
    gateway, bound = spawn_run(netns, tmp_path, "--listen", "tcp:0:interface=127.0.0.1", "--discovery", "mdns")
    port = bound["listeners"][0]["port"]
    gateway.wait_for(r"mdns: cannot announce the gateway: UDP port 5353 is held by a program "
                     r"that does not share it")
    health = netns.run(WINGMAN, "gateway", "health", f"127.0.0.1:{port}", "--json")
    assert health.returncode == 0, health.stdout
    report = json.loads(health.stdout)
    assert report["discovery"]["mdns"]["state"].startswith("failed: UDP port 5353 is held")
    browse = discover(netns, "--timeout", "500")
    assert browse.returncode == 1
    assert "wingman: mDNS discovery failed: UDP port 5353 is held by a program" in browse.stderr


def test_discovery_options_are_checked(tmp_path: Path) -> None:
    env = {**os.environ, "WINGMAN_HOME": str(tmp_path)}
    import subprocess

    def wingman(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([WINGMAN, *args], env=env, capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)

    bad = wingman("gateway", "start", "--discovery", "carrier-pigeon")
    assert bad.returncode == 2
    assert "unknown discovery method 'carrier-pigeon' (known: mdns, tailscale)" in bad.stderr
    missing = wingman("gateway", "start", "--port", "0", "--host", "127.0.0.1", "--discovery", "mdns",
                      "--mdns-interface", "nosuch0")
    assert missing.returncode == 1
    assert "mdnsInterface: no network interface named 'nosuch0' (have: " in missing.stderr
    config = tmp_path / "gateway.json"
    for value, message in (({"method": "smoke"}, "discovery: unknown discovery method 'smoke'"),
                           ({"tailscale": {"tags": "x"}}, "discovery: tailscale.tags: expected a list"),
                           ({"colour": "red"}, "discovery: unknown key 'colour'"),
                           ({"tailscale": {"apiKey": 7}}, "discovery: tailscale.apiKey: expected a non-empty")):
        config.write_text(json.dumps({"discovery": value}))
        result = wingman("gateway", "start", "--config", str(config), "--port", "0", "--host", "127.0.0.1")
        assert result.returncode == 1 and message in result.stderr, result.stderr


def test_txt_names_tls_ssh_and_no_bridge(netns: Netns, tmp_path: Path) -> None:
    """A TLS listener is announced as wss; a running SSH server adds ssh=PORT; --no-bridge says bridge=no."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from harness.support import make_pki

    pki = make_pki(tmp_path)
    keys = tmp_path / "authorized_keys"
    public = ed25519.Ed25519PrivateKey.generate().public_key()
    keys.write_bytes(public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH))
    gateway, bound = spawn_run(
        netns, tmp_path / "home", "--listen", pki.endpoint(), "--name", "vault", "--discovery", "mdns",
        "--", "--ssh", "tcp:0:interface=127.0.0.1", "--ssh-authorized-keys", str(keys), "--no-bridge",
    )
    [listener] = bound["listeners"]
    assert listener["kind"] == "ssl"
    port, ssh_port = int(listener["port"]), str(bound["ssh"]["port"])
    gateway.wait_for(r"mdns: announced 'vault'")
    result = discover(netns, "--json", "--timeout", "3000")
    assert result.returncode == 0, result.stderr
    [vault] = json.loads(result.stdout)
    assert vault["urls"] == [f"wss://127.0.0.1:{port}/ws"]
    assert vault["txt"]["transport"] == "wss" and vault["txt"]["ssh"] == ssh_port
    assert vault["txt"]["bridge"] == "no"
