"""``--onion``: the gateway publishes itself in a real, offline tor (``DisableNetwork 1``).

What tor holds is checked from a second control connection of the test's
own (``GETINFO onions/detached``), and the expected address is computed
from the key file independently of the gateway.
"""

from __future__ import annotations

import json
import os
import signal
import stat
from pathlib import Path
from typing import Iterator

import pytest

from background import stop_all
from support import GatewayProcess, health, start_gateway, wait_until
from torkit import Control, OfflineTor, onion_address, wait_for_socket

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
    finally:
        gateway.stop()
    assert "onion: removed" in gateway.log
    wait_until(lambda: not _alive(tor_pid), timeout=10, what="the launched tor to exit")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
