"""``wingman gateway tunnel`` with the real OpenSSH client against a real
``sshd`` (and against the gateway's own SSH server), all on 127.0.0.1."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Iterator

import pytest

from harness.cli_support import LineProcess, wingman
from harness.support import GatewayProcess, Node, assert_delivers, free_tcp_port, start_gateway, wait_until
from harness.sshkit import SSHServer, UserKey, process_gone, tunnel_ssh_options, write_authorized_keys


@pytest.fixture
def key(tmp_path: Path) -> UserKey:
    return UserKey(tmp_path, "tunneller")


@pytest.fixture
def sshd(tmp_path: Path, key: UserKey) -> Iterator[SSHServer]:
    server = SSHServer(tmp_path, free_tcp_port(), [key.line()])
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def helpers() -> Iterator[list[LineProcess]]:
    """Tunnel processes; each one left is stopped by pid, and its ssh must be gone."""
    started: list[LineProcess] = []
    yield started
    for helper in started:
        helper.stop()


def forward(home: Path, sshd: SSHServer, key: UserKey, gateway_port: int, *extra: str) -> LineProcess:
    return LineProcess(home, "gateway", "tunnel", f"{sshd.user}@127.0.0.1", "--ssh-port",
                       str(sshd.port), "--port", str(gateway_port), "--json",
                       *tunnel_ssh_options(key.path), *extra)


def opened(helper: LineProcess) -> int:
    """The ssh pid the helper reports once its tunnel accepts connections."""
    event = helper.read_until(lambda r: r.get("event") == "tunnel", timeout=30)
    pid = event["sshPid"]
    assert not process_gone(pid)
    return int(pid)


def test_forward_tunnel_joins_and_exchanges_messages(tmp_path: Path, sshd: SSHServer, key: UserKey,
                                                     gateway: GatewayProcess,
                                                     helpers: list[LineProcess]) -> None:
    helper = forward(tmp_path, sshd, key, gateway.port, "--name", "far-away", "--group", "ops")
    helpers.append(helper)
    ssh_pid = opened(helper)
    connected = helper.read_until(lambda r: r.get("event") == "connected")
    direct = Node(gateway.url)
    try:
        direct.register("nearby")
        direct.join("ops")
        helper.send({"type": "agent-stream", "chunk": "through ssh"})
        got = direct.recv_type("broadcast")
        assert got["payload"] == {"type": "agent-stream", "chunk": "through ssh"}
        assert got["fromName"] == "far-away" and got["fromNodeId"] == connected["nodeId"]
        direct.send({"type": "broadcast", "payload": {"groupId": "ops", "message": "back"}})
        heard = helper.read_until(lambda r: r.get("type") == "broadcast")
        assert heard["payload"] == "back"
    finally:
        direct.close()
    helper.proc.send_signal(signal.SIGTERM)
    assert helper.proc.wait(15) == 0
    wait_until(lambda: process_gone(ssh_pid), 10, "ssh to be gone after SIGTERM")


def test_sigkill_of_the_helper_leaves_no_ssh(tmp_path: Path, sshd: SSHServer, key: UserKey,
                                             gateway: GatewayProcess,
                                             helpers: list[LineProcess]) -> None:
    helper = forward(tmp_path, sshd, key, gateway.port)
    helpers.append(helper)
    ssh_pid = opened(helper)
    os.kill(helper.proc.pid, signal.SIGKILL)
    helper.proc.wait(10)
    wait_until(lambda: process_gone(ssh_pid), 10, "ssh to die with its parent")


def test_the_node_quitting_ends_the_tunnel(tmp_path: Path, sshd: SSHServer, key: UserKey,
                                           gateway: GatewayProcess,
                                           helpers: list[LineProcess]) -> None:
    helper = forward(tmp_path, sshd, key, gateway.port, "--group", "brief")
    helpers.append(helper)
    ssh_pid = opened(helper)
    helper.read_until(lambda r: r.get("event") == "connected")
    helper.close_stdin()  # end of input: the node quits
    assert helper.proc.wait(15) == 0
    assert process_gone(ssh_pid)


def test_tunnel_failures_are_reported(tmp_path: Path, sshd: SSHServer, gateway: GatewayProcess) -> None:
    stranger = UserKey(tmp_path, "stranger")
    refused = wingman(tmp_path, "gateway", "tunnel", f"{sshd.user}@127.0.0.1", "--ssh-port",
                      str(sshd.port), "--port", str(gateway.port), *tunnel_ssh_options(stranger.path))
    assert refused.returncode == 1
    assert f"wingman: tunnel to {sshd.user}@127.0.0.1 failed: ssh exited with status 255" in refused.stderr
    assert "Permission denied (publickey)" in refused.stderr
    closed_port = free_tcp_port()
    nobody = wingman(tmp_path, "gateway", "tunnel", f"{sshd.user}@127.0.0.1", "--ssh-port",
                     str(closed_port), *tunnel_ssh_options(stranger.path))
    assert nobody.returncode == 1 and "Connection refused" in nobody.stderr
    usage = wingman(tmp_path, "gateway", "tunnel", "reverse", "a@b", "--group", "x")
    assert usage.returncode == 2
    assert "--local-port, --group and --token are for `tunnel user@host`" in usage.stderr


def test_reverse_tunnel_publishes_and_reconnects(tmp_path: Path, sshd: SSHServer, key: UserKey,
                                                 gateway: GatewayProcess,
                                                 helpers: list[LineProcess]) -> None:
    remote = free_tcp_port()
    helper = LineProcess(tmp_path, "gateway", "tunnel", "reverse", f"{sshd.user}@127.0.0.1",
                         "--ssh-port", str(sshd.port), "--remote-port", str(remote),
                         "--port", str(gateway.port), "--json", *tunnel_ssh_options(key.path))
    helpers.append(helper)
    first = helper.read_until(lambda r: r.get("event") == "published", timeout=30)
    assert first["remotePort"] == remote

    def exchange(tag: str) -> None:
        direct, published = Node(gateway.url), Node(f"ws://127.0.0.1:{remote}/ws")
        try:
            for node, name in ((direct, f"direct-{tag}"), (published, f"published-{tag}")):
                assert node.register(name)["type"] == "ack"
                assert node.join(tag)["type"] == "ack"
            direct.recv_type("presence")
            assert_delivers(published, direct, tag)
            assert_delivers(direct, published, tag)
        finally:
            direct.close()
            published.close()

    exchange("first")
    os.kill(first["sshPid"], signal.SIGKILL)  # the link drops
    retry = helper.read_until(lambda r: r.get("event") == "reconnecting", timeout=15)
    assert 1.0 <= retry["delay"] <= 60.0
    again = helper.read_until(lambda r: r.get("event") == "published", timeout=90)
    assert again["sshPid"] != first["sshPid"]
    exchange("again")
    helper.proc.send_signal(signal.SIGTERM)
    assert helper.proc.wait(15) == 0
    wait_until(lambda: process_gone(again["sshPid"]), 10, "ssh to be gone after SIGTERM")


def test_forward_tunnel_through_the_gateways_own_ssh_server(tmp_path: Path, key: UserKey,
                                                            helpers: list[LineProcess]) -> None:
    authorized = write_authorized_keys(tmp_path / "authorized_keys", key.line())
    gw = start_gateway("--ssh", "tcp:0:interface=127.0.0.1", "--ssh-host-key", str(tmp_path / "hk"),
                       "--ssh-authorized-keys", str(authorized))
    try:
        ssh_port = int(gw.wait_for(r"SSH server on \S+ \(127\.0\.0\.1:(\d+)\)").group(1))
        helper = LineProcess(tmp_path, "gateway", "tunnel", "me@127.0.0.1", "--ssh-port", str(ssh_port),
                             "--port", str(gw.port), "--json", "--group", "own", "--name", "own-ssh",
                             *tunnel_ssh_options(key.path))
        helpers.append(helper)
        opened(helper)
        helper.read_until(lambda r: r.get("event") == "connected")
        direct = Node(gw.url)
        try:
            direct.register("local")
            direct.join("own")
            helper.send("hello")
            assert direct.recv_type("broadcast")["fromName"] == "own-ssh"
        finally:
            direct.close()
    finally:
        gw.stop()
