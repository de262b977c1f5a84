"""How ``wingman gateway join`` ends and speaks: final refusals with the reason,
``/direct`` by name, one ``connected`` line, a closed pipe; and the gateway's
``GET /``, ``--version``, dual-stack default and ``make run``: real processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from harness.background import Background
from harness.cli_support import WINGMAN, LineProcess, free_port, wingman
from harness.support import TWISTD, GatewayProcess, Node, http_get, running_gateway, wait_totals

ROOT = Path(__file__).resolve().parent.parent


def last_record(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


def test_a_room_the_token_refuses_is_an_error_on_stdout_and_exit_1(home: Path) -> None:
    generated = wingman(home, "gateway", "token", "--generate", "--subject", "a", "--rooms", "alpha")
    assert generated.returncode == 0, generated.stderr
    with running_gateway("--auth", "--keyring", str(home / "keys.json")) as gateway:
        refused = wingman(home, "gateway", "join", gateway.url, "--json", "--group", "beta",
                          env={"WINGMAN_TOKEN": generated.stdout.strip()})
        assert refused.returncode == 1
        records = [json.loads(line) for line in refused.stdout.splitlines()]
        assert records == [{"type": "error", "final": True, "payload": {
            "code": "FORBIDDEN", "message": "your token does not allow room 'beta'"}}], records
        assert "1006" not in refused.stdout + refused.stderr
        assert "cannot join" in refused.stderr and "FORBIDDEN" in refused.stderr
        gateway.wait_for(r"left: unregistered|unregistered")  # a clean goodbye, not a dropped connection
        wait_totals(gateway, 0, 0)


def test_a_full_gateway_is_retried_then_join_gives_up(home: Path) -> None:
    with running_gateway("--max-nodes", "1") as gateway:
        holder = Node(gateway.url)
        try:
            assert holder.register("holder")["type"] == "ack"
            full = wingman(home, "gateway", "join", gateway.url, "--json", timeout=60)
            assert full.returncode == 1
            refusal = last_record(full.stdout)
            assert refusal["type"] == "error" and refusal["payload"]["code"] == "MAX_NODES_REACHED", full.stdout
            assert full.stderr.count("the gateway is full; trying again") == 3, full.stderr
        finally:
            holder.close()


def test_a_token_refused_on_reconnect_ends_join(home: Path, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("one\n")
    port = free_port()
    args = ["--listen", f"tcp:{port}:interface=127.0.0.1", "--auth", "--token-file", str(token)]
    first = GatewayProcess(args)
    first.wait_listening()
    node = LineProcess(home, "gateway", "join", f"ws://127.0.0.1:{port}/ws", "--json", "--group", "ops",
                       env={"WINGMAN_TOKEN": "one"})
    second = None
    try:
        assert node.read_until(lambda r: r.get("event") == "connected")["room"] == "ops"
        first.stop()
        assert node.read_until(lambda r: r.get("event") == "disconnected")
        token.write_text("two\n")
        second = GatewayProcess(args)
        second.wait_listening()
        refusal = node.read_until(lambda r: r.get("type") == "error", timeout=30)
        assert refusal["payload"]["code"] == "AUTH_FAILED" and refusal["final"] is True, refusal
        assert node.proc.wait(15) == 1
    finally:
        node.stop()
        first.stop()
        if second is not None:
            second.stop()


def test_a_gateway_that_stays_full_on_reconnect_ends_join(home: Path) -> None:
    port = free_port()
    first = GatewayProcess(["--listen", f"tcp:{port}:interface=127.0.0.1"])
    first.wait_listening()
    node = LineProcess(home, "gateway", "join", f"ws://127.0.0.1:{port}/ws", "--json")
    second = holder = None
    try:
        assert node.read_until(lambda r: r.get("event") == "connected")
        # Held still while the gateway restarts full, so the holder surely gets the one place.
        os.kill(node.proc.pid, signal.SIGSTOP)
        first.stop()
        second = GatewayProcess(["--listen", f"tcp:{port}:interface=127.0.0.1", "--max-nodes", "1"])
        second.wait_listening()
        holder = Node(second.url)
        assert holder.register("holder")["type"] == "ack"
        os.kill(node.proc.pid, signal.SIGCONT)
        refusal = node.read_until(lambda r: r.get("type") == "error", timeout=30)
        assert refusal["payload"]["code"] == "MAX_NODES_REACHED" and refusal["final"] is True, refusal
        assert node.proc.wait(15) == 1
    finally:
        if node.proc.poll() is None:
            os.kill(node.proc.pid, signal.SIGCONT)
        node.stop()
        if holder is not None:
            holder.close()
        first.stop()
        if second is not None:
            second.stop()


def test_direct_accepts_an_unambiguous_member_name(gateway: GatewayProcess, home: Path) -> None:
    alice = Node(gateway.url)
    twin = None
    bob = Background([WINGMAN, "gateway", "join", gateway.url, "--name", "bob", "--group", "ops"],
                     env={"WINGMAN_HOME": str(home)}, stdin=True)
    try:
        assert alice.register("alice")["type"] == "ack" and alice.join("ops")["type"] == "ack"
        bob.wait_for(r"connected to .* as bob")
        bob.send_line("/direct alice hello by name")
        got = alice.recv_type("direct")
        assert got["payload"] == "hello by name" and got["fromName"] == "bob", got
        bob.send_line(f"/direct {alice.node_id} by id")
        assert alice.recv_type("direct")["payload"] == "by id"

        twin = Node(gateway.url)
        assert twin.register("alice")["type"] == "ack" and twin.join("ops")["type"] == "ack"
        bob.wait_for(r"\* alice joined")
        bob.send_line("/direct alice which one")
        bob.wait_for(r"! AMBIGUOUS_NAME: 2 members are named 'alice' \(.*\); use a node id")
        bob.send_line("/direct nobody hi")
        bob.wait_for(r"! NODE_NOT_FOUND")
    finally:
        bob.send_line("/quit")
        assert bob.wait_exit(15) == 0
        alice.close()
        if twin is not None:
            twin.close()


def test_join_json_says_connected_once(gateway: GatewayProcess, home: Path) -> None:
    watcher = LineProcess(home, "gateway", "join", gateway.url, "--json", "--name", "w", "--group", "ops")
    speaker = Node(gateway.url)
    try:
        first = watcher.read()
        assert first["event"] == "connected" and first["room"] == "ops", first
        assert speaker.register("s")["type"] == "ack" and speaker.join("ops")["type"] == "ack"
        speaker.request("broadcast", {"groupId": "ops", "message": "after"})
        records = []
        while not records or records[-1].get("type") != "broadcast":
            records.append(watcher.read())
        assert [r.get("event") for r in records if r.get("type") == "local"] == [], records
    finally:
        watcher.stop()
        speaker.close()


def test_join_json_into_head_ends_without_a_traceback(gateway: GatewayProcess, home: Path) -> None:
    errors = home / "stderr.txt"
    shell = subprocess.Popen(
        ["sh", "-c", '"$0" gateway join "$1" --json --group ops 2>"$2" | head -n 2', WINGMAN,
         gateway.url, str(errors)],
        env={**os.environ, "WINGMAN_HOME": str(home)}, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    speaker = Node(gateway.url)
    try:
        wait_totals(gateway, 1, 1)
        assert speaker.register("s")["type"] == "ack" and speaker.join("ops")["type"] == "ack"
        for number in range(20):
            speaker.send({"type": "broadcast", "payload": {"groupId": "ops", "message": number}})
        out, _ = shell.communicate(timeout=20)  # the shell waits for join too
        assert len(out.splitlines()) == 2
        said = errors.read_text()
        assert "Traceback" not in said and "BrokenPipeError" not in said, said
        wait_totals(gateway, 1, 1)  # join left (unregistered); the speaker stays
    finally:
        if shell.poll() is None:
            shell.kill()
            shell.wait()
        speaker.close()


def test_root_url_says_what_the_listener_serves(gateway: GatewayProcess) -> None:
    status, headers, body = http_get(gateway, "/")
    assert status == 200 and headers["Content-Type"] == "application/json"
    index = json.loads(body)
    assert index["endpoints"] == {
        "ws": "/ws", "bridge": "/bridge/", "health": "/health", "stats": "/stats", "client": "/client/wingman.js",
    }
    assert index["admin"] == {"metrics": "/metrics", "api": "/api/"}  # behind the admin credential
    assert index["console"] == "/console/" and index["documentation"]  # the console is on by default


def test_twistd_version_names_the_gateway() -> None:
    from wingman_gateway import __version__

    shown = subprocess.run([TWISTD, "wingman-gateway", "--version"], capture_output=True, text=True, timeout=30)
    assert shown.returncode == 0
    assert shown.stdout.startswith(f"wingman-gateway {__version__} (Twisted ")


def test_the_default_listener_takes_ipv4_and_ipv6_clients() -> None:
    gateway = GatewayProcess(["--port", "0"])  # the default interface
    try:
        (listener,) = gateway.listeners if gateway.wait_listening() else []
        assert (listener["endpoint"], listener["host"]) == (r"tcp6:0:interface=\:\:", "::")
        for host in ("127.0.0.1", "[::1]"):
            node = Node(f"ws://{host}:{listener['port']}/ws")
            try:
                assert node.register(f"via {host}")["type"] == "ack"
            finally:
                node.close()
    finally:
        gateway.stop()


def test_make_run_installs_the_gateway_without_test_extras(tmp_path: Path) -> None:
    make = shutil.which("make")
    assert make is not None
    plan = subprocess.run([make, "-n", "-C", str(ROOT), "run", f"VENV={tmp_path / 'venv'}",
                           f"PYTHON={sys.executable}"], capture_output=True, text=True, timeout=30)
    assert plan.returncode == 0, plan.stderr
    installs = [line for line in plan.stdout.splitlines() if "pip install" in line and "-e" in line]
    assert installs == [f"{tmp_path / 'venv'}/bin/python -m pip install -q -e . "
                        "--config-settings editable_mode=compat"], plan.stdout
