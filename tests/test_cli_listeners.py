"""``wingman gateway start|status|health|stop|join`` with every listener kind, the
gateway this WINGMAN_HOME started as the default target, and secrets kept out
of ``ps`` and world-readable files: real ``wingman`` and gateway processes."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
from pathlib import Path

import pytest
from twisted.internet.endpoints import quoteStringArgument

from harness.cli_support import LineProcess, free_port, wingman
from harness.support import GatewayProcess, Node, make_pki


def self_signed(directory: Path, name: str = "not-this-host.example") -> str:
    """An ssl: endpoint on 127.0.0.1 with a self-signed certificate for another name (openssl)."""
    directory.mkdir(parents=True, exist_ok=True)
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={name}", "-days", "1"],
        check=True, capture_output=True, timeout=30,
    )
    return (f"ssl:0:interface=127.0.0.1:privateKey={quoteStringArgument(str(key))}"
            f":certKey={quoteStringArgument(str(cert))}")


def bound(home: Path) -> list[dict]:
    """The listeners the started gateway wrote to its ports file."""
    return json.loads((home / "ports.json").read_text())["listeners"]


def pid_of(home: Path) -> int:
    return int((home / "gateway.pid").read_text())


def alive(pid: int) -> bool:
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat_line.rsplit(")", 1)[-1].split()[0] != "Z"


def test_start_with_a_self_signed_tls_listener_and_a_unix_socket(home: Path, tmp_path: Path) -> None:
    socket_path = tmp_path / "gw.sock"
    started = wingman(home, "gateway", "start", "--name", "tls", "--listen", self_signed(tmp_path / "tls"),
                      "--listen", f"unix:{socket_path}")
    assert started.returncode == 0, started.stderr
    tls, unix = bound(home)
    assert (tls["kind"], unix["kind"], unix["path"]) == ("ssl", "unix", str(socket_path))
    port = tls["port"]
    assert f"WebSocket: wss://127.0.0.1:{port}/ws" in started.stdout
    assert f"Health:    https://127.0.0.1:{port}/health" in started.stdout
    assert f"Unix socket: {socket_path}" in started.stdout

    status = wingman(home, "gateway", "status")
    assert status.returncode == 0, status.stdout
    assert f"running (pid {pid_of(home)}) at wss://127.0.0.1:{port}/ws" in status.stdout
    health = wingman(home, "gateway", "health")  # trusts exactly the certificate it was started with
    assert health.returncode == 0 and "tls (wingman-gateway" in health.stdout, health.stdout
    over_unix = wingman(home, "gateway", "health", f"unix:{socket_path}")
    assert over_unix.returncode == 0 and ": healthy" in over_unix.stdout, over_unix.stdout
    # Named by URL, the certificate is verified as usual, and this one is not trusted.
    refused = wingman(home, "gateway", "health", f"https://127.0.0.1:{port}", "--timeout", "3")
    assert refused.returncode == 1 and "gateway unreachable" in refused.stdout
    assert "TLS handshake failed: certificate verify failed" in refused.stdout
    assert "Traceback" not in refused.stderr, refused.stderr

    stopped = wingman(home, "gateway", "stop")
    assert stopped.returncode == 0 and not (home / "gateway.pid").exists()
    assert not (home / "ports.json").exists()


def test_start_with_only_a_unix_socket(home: Path, tmp_path: Path) -> None:
    socket_path = tmp_path / "only.sock"
    started = wingman(home, "gateway", "start", "--name", "sock", "--listen", f"unix:{socket_path}")
    try:
        assert started.returncode == 0, started.stderr
        assert f"Unix socket: {socket_path}" in started.stdout and "WebSocket:" not in started.stdout
        status = wingman(home, "gateway", "status")
        assert status.returncode == 0 and f"at unix:{socket_path}" in status.stdout, status.stdout
        health = wingman(home, "gateway", "health", "--json")
        assert health.returncode == 0 and json.loads(health.stdout)["name"] == "sock"
    finally:
        assert wingman(home, "gateway", "stop").returncode == 0


def test_start_status_health_and_join_with_a_private_ca(home: Path, tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    started = wingman(home, "gateway", "start", "--name", "ca", "--listen", pki.endpoint(), "--ca-file", str(pki.ca))
    try:
        assert started.returncode == 0, started.stderr
        port = bound(home)[0]["port"]
        url = f"https://127.0.0.1:{port}"
        assert wingman(home, "gateway", "health", url, "--ca-file", str(pki.ca)).returncode == 0
        without = wingman(home, "gateway", "health", url, "--timeout", "3")
        assert without.returncode == 1 and "gateway unreachable" in without.stdout
        status = wingman(home, "gateway", "status", "--ca-file", str(pki.ca))
        assert status.returncode == 0 and f"at wss://127.0.0.1:{port}/ws" in status.stdout, status.stdout
        assert wingman(home, "gateway", "status").returncode == 0  # the start's --ca-file is remembered
        joined = LineProcess(home, "gateway", "join", "--json", "--name", "t", "--group", "ops")
        try:
            record = joined.read_until(lambda r: r.get("event") == "connected")
            assert record["room"] == "ops"
        finally:
            joined.stop()
    finally:
        assert wingman(home, "gateway", "stop").returncode == 0


def test_a_start_that_never_becomes_healthy_stops_what_it_started(home: Path, tmp_path: Path) -> None:
    served, other = make_pki(tmp_path / "served"), make_pki(tmp_path / "other")
    failed = wingman(home, "gateway", "start", "--listen", served.endpoint(), "--ca-file", str(other.ca),
                     "--wait", "2")
    assert failed.returncode == 1
    assert "did not answer /health within 2 s" in failed.stderr, failed.stderr
    pid = int(re.search(r"stopped it \(pid (\d+)\)", failed.stderr).group(1))  # type: ignore[union-attr]
    assert not alive(pid)
    assert not (home / "gateway.pid").exists()
    assert wingman(home, "gateway", "status").returncode == 3


def test_commands_without_a_url_use_the_gateway_this_home_started(home: Path) -> None:
    port = free_port()
    assert wingman(home, "gateway", "start", "--port", str(port), "--host", "127.0.0.1",
                   "--name", "mine").returncode == 0
    try:
        health = wingman(home, "gateway", "health")
        assert health.returncode == 0 and "mine (wingman-gateway" in health.stdout, health.stdout
        node = LineProcess(home, "gateway", "join", "--json", "--name", "n", "--group", "g")
        try:
            assert node.read_until(lambda r: r.get("event") == "connected")["room"] == "g"
            assert "1 nodes, 1 rooms" in wingman(home, "gateway", "status").stdout
        finally:
            node.stop()
    finally:
        assert wingman(home, "gateway", "stop").returncode == 0


@pytest.mark.parametrize("where", ["option", "after --"])
def test_the_token_is_not_in_ps_nor_in_world_readable_files(home: Path, where: str) -> None:
    secret = "do-not-show-" + os.urandom(6).hex()
    port = free_port()
    token = ["--token", secret] if where == "option" else ["--", "--token", secret]
    started = wingman(home, "gateway", "start", "--port", str(port), "--host", "127.0.0.1", "--auth", *token)
    try:
        assert started.returncode == 0, started.stderr
        pid = pid_of(home)
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode()
        ps = subprocess.run(["ps", "-ww", "-o", "args=", "-p", str(pid)], capture_output=True, text=True).stdout
        assert "wingman-gateway" in ps and "--token-file" in cmdline
        assert secret not in cmdline and secret not in ps
        for private in (home / "gateway.json", home / "token"):
            assert stat.S_IMODE(private.stat().st_mode) == 0o600, private
        assert secret not in (home / "gateway.json").read_text()
        url = f"ws://127.0.0.1:{port}/ws"
        good = wingman(home, "gateway", "join", url, "--json", env={"WINGMAN_TOKEN": secret})
        assert good.returncode == 0 and '"event": "connected"' in good.stdout, good.stderr
        bad = wingman(home, "gateway", "join", url, "--json", env={"WINGMAN_TOKEN": "wrong"})
        assert bad.returncode == 1
        refusal = json.loads(bad.stdout.splitlines()[-1])
        assert refusal["type"] == "error" and refusal["payload"]["code"] == "AUTH_FAILED", bad.stdout
        assert "cannot join" in bad.stderr and "Traceback" not in bad.stderr
        typed = wingman(home, "gateway", "join", url, env={"WINGMAN_TOKEN": "wrong"})  # interactive
        assert typed.returncode == 1 and "AUTH_FAILED" in typed.stderr and typed.stdout == ""
    finally:
        assert wingman(home, "gateway", "stop").returncode == 0


def test_the_token_file_is_read_again_on_sighup(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first\n")
    gateway = GatewayProcess(["--listen", "tcp:0:interface=127.0.0.1", "--auth", "--token-file", str(token)])
    try:
        gateway.wait_listening()
        assert "first" not in " ".join(gateway.command)

        def register(secret: str) -> str:
            node = Node(gateway.url)
            try:
                reply = node.register("n", token=secret)
                return reply["type"] if reply["type"] == "ack" else reply["payload"]["code"]
            finally:
                node.close()

        assert register("first") == "ack"
        token.write_text("second\n")
        os.kill(gateway.pid, signal.SIGHUP)
        gateway.wait_for("reloaded the shared token")
        assert (register("first"), register("second")) == ("AUTH_FAILED", "ack")
        token.write_text("")  # a broken file keeps the token in force
        os.kill(gateway.pid, signal.SIGHUP)
        gateway.wait_for("the shared token loaded before stays in force")
        assert register("second") == "ack"
    finally:
        gateway.stop()


def test_status_does_not_call_a_live_unrelated_pid_not_running(home: Path) -> None:
    other = subprocess.Popen(["sleep", "60"])
    try:
        (home / "gateway.pid").write_text(str(other.pid))
        status = wingman(home, "gateway", "status")
        assert status.returncode == 1
        assert f"pid {other.pid} is now another program, not the gateway" in status.stdout
        assert "not running" not in status.stdout
    finally:
        other.kill()
        other.wait()


def test_start_prints_the_ssh_port_and_host_key_fingerprint(home: Path, tmp_path: Path) -> None:
    host_key, authorized = tmp_path / "host_key", tmp_path / "authorized_keys"
    authorized.write_text("")
    started = wingman(home, "gateway", "start", "--port", str(free_port()), "--host", "127.0.0.1", "--",
                      "--ssh", "tcp:0:interface=127.0.0.1", "--ssh-host-key", str(host_key),
                      "--ssh-authorized-keys", str(authorized))
    try:
        assert started.returncode == 0, started.stderr
        ssh = json.loads((home / "ports.json").read_text())["ssh"]
        # OpenSSH's own reading of the key the gateway made.
        listed = subprocess.run(["ssh-keygen", "-l", "-f", str(host_key)], capture_output=True, text=True)
        fingerprint = listed.stdout.split()[1]
        assert fingerprint.startswith("SHA256:") and ssh["fingerprint"] == fingerprint
        assert f"SSH:       port {ssh['port']} (ssh -p {ssh['port']} HOST -s wingman)" in started.stdout
        assert f"Host key:  {fingerprint}" in started.stdout
    finally:
        assert wingman(home, "gateway", "stop").returncode == 0
