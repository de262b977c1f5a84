"""``--onion``: the gateway publishes itself in a real, offline tor (``DisableNetwork 1``).

What tor holds is checked from a second control connection of the test's
own (``GETINFO onions/detached``), and the expected address is computed
from the key file independently of the gateway.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import stat
from pathlib import Path
from typing import Any, Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from harness.background import stop_all
from harness.cli_support import wingman
from harness.netns import Netns
from harness.support import GatewayProcess, Node, health, start_gateway, wait_until
from harness.netns import discover, run_gateway
from harness.support import assert_refused_at_startup
from harness.torkit import Control, OfflineTor, onion_address, wait_for_socket

PUBLISHED = r"onion: published (ws://\S+\.onion/ws)"


@pytest.fixture
def tor(tmp_path: Path) -> Iterator[OfflineTor]:
    process = OfflineTor(tmp_path / "tor")
    try:
        yield process
    finally:
        process.stop()


def detached(tor_socket: Path) -> set[str]:
    control = Control(tor_socket)
    try:
        return control.detached()
    finally:
        control.close()


def onion_gateway(tmp_path: Path, *args: str) -> GatewayProcess:
    return start_gateway("--onion", "--onion-key", str(tmp_path / "onion_key"), *args,
                         env={"WINGMAN_HOME": str(tmp_path / "home")})


def test_attached_gateway_publishes_a_stable_address_and_removes_it_on_stop(tmp_path: Path, tor: OfflineTor) -> None:
    gateway = onion_gateway(tmp_path, "--tor-control", tor.endpoint)
    try:
        url = gateway.wait_for(PUBLISHED, timeout=30).group(1)
        key_file = tmp_path / "onion_key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert key_file.read_text().startswith("ED25519-V3:")
        address = onion_address(key_file.read_text())
        assert url == f"ws://{address}.onion/ws"
        assert address in detached(tor.control_socket)
        report = health(gateway)["onion"]
        assert report["state"] == "published"
        assert report["url"] == url and report["address"] == f"{address}.onion"
        assert report["target"] == f"127.0.0.1:{gateway.port}"
        assert report["tor"] == tor.endpoint
        assert f"onion: serving {url}" in gateway.log
    finally:
        gateway.stop()
    assert "onion: removed" in gateway.log
    assert address not in detached(tor.control_socket)

    again = onion_gateway(tmp_path, "--tor-control", tor.endpoint)
    try:
        assert again.wait_for(PUBLISHED, timeout=30).group(1) == url
        assert detached(tor.control_socket) == {address}
        assert "created onion service key" not in again.log
    finally:
        again.stop()
    assert address not in detached(tor.control_socket)


def test_service_comes_back_when_tor_restarts_under_the_gateway(tmp_path: Path) -> None:
    tor = OfflineTor(tmp_path / "tor")
    processes = [tor]
    try:
        gateway = onion_gateway(tmp_path, "--tor-control", tor.endpoint)
        processes.append(gateway)
        gateway.wait_for(PUBLISHED, timeout=30)
        address = onion_address((tmp_path / "onion_key").read_text())
        tor.stop()
        gateway.wait_for(r"onion: lost the connection to tor", timeout=15)
        assert health(gateway)["onion"]["state"].startswith("waiting for tor")
        mark = len(gateway.lines)
        tor = OfflineTor(tmp_path / "tor")  # same data directory and control socket
        processes.insert(0, tor)
        gateway.wait_for(PUBLISHED, timeout=30, start=mark)
        assert address in detached(tor.control_socket)
        assert health(gateway)["onion"]["state"] == "published"
    finally:
        stop_all(processes)


def test_a_service_left_behind_by_a_killed_gateway_is_replaced(tmp_path: Path, tor: OfflineTor) -> None:
    first = onion_gateway(tmp_path, "--tor-control", tor.endpoint)
    first.wait_for(PUBLISHED, timeout=30)
    os.kill(first.pid, signal.SIGKILL)
    first.wait_exit()
    address = onion_address((tmp_path / "onion_key").read_text())
    assert address in detached(tor.control_socket)  # detached: it outlives the gateway
    second = onion_gateway(tmp_path, "--tor-control", tor.endpoint)
    try:
        second.wait_for(PUBLISHED, timeout=30)
        assert "onion: replacing the service" in second.log
        assert detached(tor.control_socket) == {address}
        assert health(second)["onion"]["target"] == f"127.0.0.1:{second.port}"
    finally:
        second.stop()
    assert address not in detached(tor.control_socket)


def test_gateway_launches_its_own_tor(tmp_path: Path) -> None:
    torrc = tmp_path / "torrc"
    torrc.write_text("DisableNetwork 1\n")
    gateway = onion_gateway(tmp_path, "--tor-config", str(torrc))
    try:
        url = gateway.wait_for(PUBLISHED, timeout=60).group(1)
        tor_pid = int(gateway.wait_for(r"launched tor \(pid (\d+)").group(1))
        address = onion_address((tmp_path / "onion_key").read_text())
        assert url == f"ws://{address}.onion/ws"
        socket_path = tmp_path / "tor" / "control.sock"  # beside the key
        wait_for_socket(socket_path)
        assert address in detached(socket_path)
        assert health(gateway)["onion"]["tor"] == "launched"
        # The gateway's tor dies: it is started again and the service is back.
        mark = len(gateway.lines)
        os.kill(tor_pid, signal.SIGKILL)
        tor_pid = int(gateway.wait_for(r"launched tor \(pid (\d+)", timeout=30, start=mark).group(1))
        gateway.wait_for(PUBLISHED, timeout=30, start=mark)
        assert address in detached(socket_path)
    finally:
        gateway.stop()
    assert "onion: removed" in gateway.log
    wait_until(lambda: not _alive(tor_pid), timeout=10, what="the launched tor to exit")


def test_a_launched_tor_that_refuses_its_torrc_is_reported(tmp_path: Path) -> None:
    torrc = tmp_path / "torrc"
    torrc.write_text("DisableNetwork 1\nNoSuchOption 1\n")
    gateway = onion_gateway(tmp_path, "--tor-config", str(torrc))
    try:
        gateway.wait_for(r"onion: cannot publish the service yet: the launched tor exited: .*NoSuchOption", timeout=30)
        assert "NoSuchOption" in health(gateway)["onion"]["state"]
        node = Node(gateway.url)
        try:
            assert node.register("still-here")["type"] == "ack"
        finally:
            node.close()
    finally:
        gateway.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_client_authorization_keys_are_given_to_tor(tmp_path: Path, tor: OfflineTor) -> None:
    """``wingman gateway onion-client`` makes a pair; the gateway publishes with the public keys."""
    home = tmp_path / "home"
    clients = tmp_path / "clients"
    private_lines = []
    for name in ("alice", "bob"):
        made = wingman(home, "gateway", "onion-client", name, "--onion-key", str(tmp_path / "onion_key"),
                       "--clients", str(clients))
        assert made.returncode == 0, made.stderr
        private_lines.append(made.stdout.strip())
    assert stat.S_IMODE(clients.stat().st_mode) == 0o600
    address = onion_address((tmp_path / "onion_key").read_text())
    public = [line.split("#")[0].strip() for line in clients.read_text().splitlines()]
    for line, public_line in zip(private_lines, public):
        # ADDRESS:descriptor:x25519:PRIVATE, and its public half is what the gateway file lists.
        onion, kind, curve, private = line.split(":")
        assert (onion, kind, curve) == (address, "descriptor", "x25519")
        raw = base64.b32decode(private + "=" * (-len(private) % 8))
        derived = X25519PrivateKey.from_private_bytes(raw).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        assert public_line == "descriptor:x25519:" + base64.b32encode(derived).decode().rstrip("=")
    gateway = onion_gateway(tmp_path, "--tor-control", tor.endpoint, "--onion-client-auth", str(clients))
    try:
        gateway.wait_for(PUBLISHED, timeout=30)
        assert health(gateway)["onion"]["clientAuth"] == 2
        assert address in detached(tor.control_socket)
    finally:
        gateway.stop()


@pytest.mark.parametrize("setup, args, message", [
    (lambda d: (d / "onion_key").write_text("hello\n"), [],
     "onion-key: {d}/onion_key: expected ED25519-V3:BASE64, as tor's ADD_ONION takes it"),
    (lambda d: (d / "onion_key").write_text("ED25519-V3:" + base64.b64encode(bytes(64)).decode()), [],
     "not an expanded ed25519 secret key (64 bytes, clamped)"),
    (lambda d: (d / "clients").write_text("# ours\ndescriptor:x25519:NOTBASE32!\n"),
     ["--onion-client-auth", "{d}/clients"], "onion-client-auth: {d}/clients line 2: 'NOTBASE32!' is not base32"),
    (lambda d: (d / "clients").write_text("# nobody yet\n"),
     ["--onion-client-auth", "{d}/clients"], "onion-client-auth: {d}/clients lists no client key"),
    (lambda d: None, ["--tor-control", "carrier-pigeon:9051"], "torControl: bad endpoint 'carrier-pigeon:9051'"),
    (lambda d: (d / "torrc").write_text(""), ["--tor-control", "tcp:127.0.0.1:9051", "--tor-config", "{d}/torrc"],
     "torConfig: only for the tor the gateway launches (not with torControl)"),
    (lambda d: None, ["--tor-config", "{d}/missing"], "torConfig: no such file '{d}/missing'"),
])
def test_bad_onion_settings_stop_startup_with_a_clear_message(tmp_path: Path, setup: Any, args: list[str],
                                                              message: str) -> None:
    setup(tmp_path)
    gateway = GatewayProcess(["--listen", "tcp:0:interface=127.0.0.1", "--onion", "--onion-key",
                              str(tmp_path / "onion_key"), *(a.format(d=tmp_path) for a in args)],
                             env={"WINGMAN_HOME": str(tmp_path / "home")})
    assert_refused_at_startup(gateway, message.format(d=tmp_path))


def test_without_tor_the_gateway_serves_and_says_it_waits(tmp_path: Path) -> None:
    missing = tmp_path / "no-tor" / "control"
    gateway = onion_gateway(tmp_path, "--tor-control", f"unix:{missing}")
    try:
        gateway.wait_for(r"onion: cannot publish the service yet: ", timeout=15)
        report = health(gateway)["onion"]
        assert report["state"].startswith("waiting for tor: ") and report["url"].endswith(".onion/ws")
        node = Node(gateway.url)
        try:
            assert node.register("still-here")["type"] == "ack"
        finally:
            node.close()
        # tor appears later: published without a restart.
        tor = OfflineTor(missing.parent)
        try:
            gateway.wait_for(PUBLISHED, timeout=30)
            assert onion_address((tmp_path / "onion_key").read_text()) in detached(tor.control_socket)
        finally:
            gateway.stop()
            tor.stop()
    finally:
        gateway.stop()


def test_status_and_health_commands_show_the_onion_url(tmp_path: Path, tor: OfflineTor) -> None:
    home = tmp_path / "home"
    started = wingman(home, "gateway", "start", "--port", "0", "--host", "127.0.0.1", "--",
                      "--onion", "--tor-control", tor.endpoint, "--onion-key", str(tmp_path / "onion_key"))
    try:
        assert started.returncode == 0, started.stderr
        url = f"ws://{onion_address((tmp_path / 'onion_key').read_text())}.onion/ws"
        assert f"  Onion:     {url}" in started.stdout
        wait_until(lambda: f"onion: {url} (published)" in wingman(home, "gateway", "status").stdout,
                   timeout=30, what="status to show the published onion service")
    finally:
        stopped = wingman(home, "gateway", "stop")
        assert stopped.returncode == 0, stopped.stderr
    assert not detached(tor.control_socket)


def test_mdns_txt_announces_the_onion_url(tmp_path: Path, tor: OfflineTor) -> None:
    with Netns() as netns:
        gateway, _ = run_gateway(netns, tmp_path / "home", "hidden", "--", "--onion", "--tor-control",
                                 tor.endpoint, "--onion-key", str(tmp_path / "onion_key"))
        try:
            result = discover(netns, "--json", "--timeout", "3000")
            assert result.returncode == 0, result.stderr
            [found] = json.loads(result.stdout)
            address = onion_address((tmp_path / "onion_key").read_text())
            assert found["txt"]["onion"] == f"ws://{address}.onion/ws"
        finally:
            gateway.stop()


def test_config_file_keys_turn_the_onion_service_on(tmp_path: Path, tor: OfflineTor) -> None:
    config = tmp_path / "gateway.json"
    config.write_text(json.dumps({"onion": True, "torControl": tor.endpoint,
                                  "onionKey": str(tmp_path / "onion_key")}))
    gateway = start_gateway("--config", str(config), env={"WINGMAN_HOME": str(tmp_path / "home")})
    try:
        gateway.wait_for(PUBLISHED, timeout=30)
        assert onion_address((tmp_path / "onion_key").read_text()) in detached(tor.control_socket)
    finally:
        gateway.stop()
    config.write_text(json.dumps({"onion": "yes"}))
    refused = GatewayProcess(["--config", str(config)])
    assert_refused_at_startup(refused, "onion: expected true or false, got 'yes'")
