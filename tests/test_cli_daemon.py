"""The `wingman gateway` lifecycle, end to end, as an operator runs it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from harness.cli_support import WINGMAN, LineProcess, free_port, wingman
from harness.support import Node


def test_start_status_health_join_restart_stop(home: Path) -> None:
    port = free_port()
    started = wingman(home, "gateway", "start", "--port", str(port), "--host", "127.0.0.1",
                      "--name", "desk")
    assert started.returncode == 0, started.stderr
    assert f"WebSocket: ws://127.0.0.1:{port}/ws" in started.stdout
    assert "Wingman Gateway 'desk' running (pid" in started.stdout
    pid = int((home / "gateway.pid").read_text())
    assert (home / "logs" / "wingman.log").exists()

    status = wingman(home, "gateway", "status")
    assert status.returncode == 0, status.stdout
    assert f"running (pid {pid}) at ws://127.0.0.1:{port}/ws" in status.stdout
    assert "0 nodes, 0 rooms" in status.stdout

    health = wingman(home, "gateway", "health", "--port", str(port))
    assert health.returncode == 0
    assert "desk (wingman-gateway" in health.stdout and ": healthy" in health.stdout

    url = f"ws://127.0.0.1:{port}/ws"
    alice = LineProcess(home, "gateway", "join", url, "--json", "--name", "alice", "--group", "ops")
    assert alice.read()["event"] == "connected"
    bob = LineProcess(home, "gateway", "join", url, "--json", "--name", "bob", "--group", "ops")
    try:
        assert bob.read()["event"] == "connected"
        joined = alice.read_until(lambda r: r.get("type") == "presence")
        assert joined["payload"]["name"] == "bob"
        alice.send({"type": "agent-stream", "chunk": {"data": {"chunk": "hi"}}})
        got = bob.read_until(lambda r: r.get("type") == "broadcast")
        assert got["fromName"] == "alice"
        assert got["groupName"] == "ops"
        assert got["payload"] == {"type": "agent-stream", "chunk": {"data": {"chunk": "hi"}}}
        status = wingman(home, "gateway", "status")
        assert "2 nodes, 1 rooms" in status.stdout
        bob.send("not json is fine as a string")
        assert alice.read_until(lambda r: r.get("type") == "broadcast")["payload"] == (
            "not json is fine as a string"
        )
        alice.close_stdin()  # end of input: the node unregisters and exits
        assert alice.proc.wait(10) == 0
        left = bob.read_until(lambda r: r.get("type") == "presence")
        assert left["payload"]["event"] == "left"
        assert left["payload"]["reason"] == "unregistered"
    finally:
        alice.stop()
        bob.stop()

    restarted = wingman(home, "gateway", "restart")
    assert restarted.returncode == 0, restarted.stderr
    new_pid = int((home / "gateway.pid").read_text())
    assert new_pid != pid
    assert f"ws://127.0.0.1:{port}/ws" in restarted.stdout
    assert "'desk'" in restarted.stdout  # the same options again

    stopped = wingman(home, "gateway", "stop")
    assert stopped.returncode == 0
    assert f"stopped the gateway (pid {new_pid})" in stopped.stdout
    assert not (home / "gateway.pid").exists()
    status = wingman(home, "gateway", "status")
    assert status.returncode == 3
    assert status.stdout.strip() == "stopped"


def test_second_start_is_refused(home: Path) -> None:
    port = free_port()
    assert wingman(home, "gateway", "start", "--port", str(port), "--host", "127.0.0.1").returncode == 0
    try:
        again = wingman(home, "gateway", "start", "--port", str(free_port()), "--host", "127.0.0.1")
        assert again.returncode == 1
        assert "the gateway is already running (pid" in again.stderr
    finally:
        assert wingman(home, "gateway", "stop").returncode == 0


def test_stale_pid_file_is_detected_and_replaced(home: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    (home / "gateway.pid").write_text(str(dead.pid))
    status = wingman(home, "gateway", "status")
    assert status.returncode == 1
    assert f"stale pid file" in status.stdout
    port = free_port()
    started = wingman(home, "gateway", "start", "--port", str(port), "--host", "127.0.0.1")
    try:
        assert started.returncode == 0, started.stderr
        assert f"removing stale pid file" in started.stdout
        assert int((home / "gateway.pid").read_text()) != dead.pid
    finally:
        wingman(home, "gateway", "stop")


def test_start_failure_reports_the_reason(home: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        failed = wingman(home, "gateway", "start", "--port", str(port), "--host", "127.0.0.1")
    assert failed.returncode == 1
    assert "the gateway failed to start" in failed.stderr
    assert f"cannot listen on tcp:{port}:interface=127.0.0.1" in failed.stderr
    assert "Address already in use" in failed.stderr
    assert not (home / "gateway.pid").exists()
    assert wingman(home, "gateway", "status").returncode == 3


def test_stop_sends_going_away_to_clients(home: Path) -> None:
    port = free_port()
    assert wingman(home, "gateway", "start", "--port", str(port), "--host", "127.0.0.1").returncode == 0
    node = Node(f"ws://127.0.0.1:{port}/ws")
    node.register("watcher")
    stopped = wingman(home, "gateway", "stop")
    assert stopped.returncode == 0
    with pytest.raises(Exception):
        node.recv(5)
    assert node.ws.close_code == 1001
    assert node.ws.close_reason == "gateway shutting down"


def test_json_logs(home: Path) -> None:
    port = free_port()
    started = wingman(home, "gateway", "start", "--port", str(port), "--host", "127.0.0.1",
                      "--log-format", "json")
    try:
        assert started.returncode == 0, started.stderr
    finally:
        wingman(home, "gateway", "stop")
    records = [json.loads(line) for line in (home / "logs" / "wingman.log").read_text().splitlines()]
    listening = [r for r in records if r["message"].startswith("wingman-gateway listening on")]
    assert listening and listening[0]["level"] == "info"
    assert listening[0]["namespace"] == "wingman_gateway.service"
    assert listening[0]["endpoint"] == f"tcp:{port}:interface=127.0.0.1"


def test_start_help_lists_options(home: Path) -> None:
    help_text = wingman(home, "gateway", "start", "--help").stdout
    assert "--port" in help_text and "(default: text)" in help_text


def test_start_failure_reason_from_json_log(home: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        failed = wingman(home, "gateway", "start", "--port", str(port), "--host", "127.0.0.1",
                         "--log-format", "json")
    assert failed.returncode == 1
    assert f"cannot listen on tcp:{port}:interface=127.0.0.1" in failed.stderr


def test_stop_escalates_to_sigkill_after_the_timeout(home: Path) -> None:
    """A gateway that cannot act on SIGTERM (here: stopped) is killed after --timeout."""
    port = free_port()
    assert wingman(home, "gateway", "start", "--port", str(port), "--host", "127.0.0.1").returncode == 0
    pid = int((home / "gateway.pid").read_text())
    os.kill(pid, signal.SIGSTOP)
    try:
        stopped = wingman(home, "gateway", "stop", "--timeout", "1")
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    assert stopped.returncode == 0
    assert "did not stop within 1 s; sending SIGKILL" in stopped.stdout
    assert f"stopped the gateway (pid {pid})" in stopped.stdout
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    assert wingman(home, "gateway", "status").returncode == 3


def test_health_of_an_unreachable_gateway_fails(home: Path) -> None:
    port = free_port()  # nothing listens there
    result = wingman(home, "gateway", "health", f"http://127.0.0.1:{port}", "--timeout", "2")
    assert result.returncode == 1
    assert result.stdout.startswith(f"wingman: gateway unreachable: http://127.0.0.1:{port}/health:")


def test_run_in_the_foreground(home: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [WINGMAN, "gateway", "run", "--port", str(port), "--host", "127.0.0.1", "--name", "fg"],
        env={**os.environ, "WINGMAN_HOME": str(home)}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )
    try:
        assert proc.stdout is not None
        for _ in range(200):
            line = proc.stdout.readline()
            if "listening on" in line or not line:
                break
        assert f"listening on tcp:{port}:interface=127.0.0.1" in line
        health = wingman(home, "gateway", "health", "--port", str(port))
        assert health.returncode == 0 and "fg (wingman-gateway" in health.stdout
        assert not (home / "gateway.pid").exists()  # foreground: no pid file
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) in (0, -signal.SIGTERM)
