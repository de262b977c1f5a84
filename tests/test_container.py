"""The container image: the repository's Dockerfile built and run with real podman.

The image is built once per run (``gateway_image`` in podmankit.py) on a
Debian bookworm base made with debootstrap. Containers share the host's
network (``--network host``) and listen on a free loopback port, so the
tests speak to them as to any gateway: /health, WebSocket nodes, SIGTERM.
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

from harness.podmankit import Podman
from harness.support import Node, assert_delivers, expect_closed, expect_error, free_tcp_port, wait_healthy

STATE = "/var/lib/wingman-gateway"
STOP_TIMEOUT = 10  # seconds podman waits after SIGTERM before it kills


def run_gateway(podman: Podman, image: str, *options: str, env: dict[str, str] | None = None) -> tuple[str, int]:
    """A gateway container on a free loopback port of the host's network; (id, port)."""
    port = free_tcp_port()
    settings = {"WINGMAN_LISTEN": f"tcp:{port}:interface=127.0.0.1", **(env or {})}
    flags = [item for key, value in settings.items() for item in ("--env", f"{key}={value}")]
    container = podman.start(image, "--network", "host", *flags, *options)
    return container, port


def healthy(podman: Podman, container: str, port: int) -> dict[str, Any]:
    """The /health report, once it answers, and the image's own HEALTHCHECK passing."""
    try:
        report = wait_healthy(f"http://127.0.0.1:{port}/health", timeout=30)
    except AssertionError:
        raise AssertionError(f"container did not answer; its log:\n{podman.logs(container)}")
    check = podman.run("healthcheck", "run", container, check=False)
    assert check.returncode == 0, (check.stdout, check.stderr, podman.logs(container))
    return report  # type: ignore[no-any-return]


def member(port: int, name: str, room: str, **register: Any) -> Node:
    node = Node(f"ws://127.0.0.1:{port}/ws")
    assert node.register(name, **register)["type"] == "ack"
    assert node.join(room)["type"] == "ack"
    return node


def test_image_runs_twistd_as_a_user_with_a_healthcheck_and_one_volume(podman: Podman, gateway_image: str) -> None:
    image = podman.inspect(gateway_image)
    config = image["Config"]
    assert config["Entrypoint"] == ["twistd", "--nodaemon", "--pidfile=", "wingman-gateway"]
    assert config["User"] == "wingman"
    assert config["StopSignal"] == "SIGTERM"
    assert list(config["Volumes"]) == [STATE]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["WINGMAN_LISTEN"] == "tcp:3000"
    assert env["WINGMAN_HOME"] == STATE
    assert env["WINGMAN_KEYRING"] == f"{STATE}/keys.json"
    # Kept only because the image is built in docker format.
    assert image["Healthcheck"]["Test"] == ["CMD", "python", "-m", "wingman_gateway.cli.healthcheck"]


def test_serves_nodes_and_closes_them_with_1001_on_sigterm(podman: Podman, gateway_image: str) -> None:
    container, port = run_gateway(podman, gateway_image, env={"WINGMAN_NAME": "boxed"})
    report = healthy(podman, container, port)
    assert (report["status"], report["name"], report["auth"]) == ("healthy", "boxed", "optional")
    assert podman.inspect(container)["State"]["Health"]["Status"] == "healthy"
    identity = podman.run("exec", container, "id").stdout.split()
    assert identity == ["uid=10001(wingman)", "gid=10001(wingman)", "groups=10001(wingman)"]

    alice, bob = member(port, "alice", "crew"), member(port, "bob", "crew")
    assert_delivers(alice, bob, "crew")
    assert_delivers(bob, alice, "crew")

    stopping = time.monotonic()
    podman.run("stop", "--time", str(STOP_TIMEOUT), container, timeout=STOP_TIMEOUT + 30)
    for node in (alice, bob):
        assert expect_closed(node) == (1001, "gateway shutting down")
    state = podman.wait_exited(container)
    # twistd is PID 1: it handled SIGTERM and ended by itself (a SIGKILL after
    # the timeout would show as 137, and take STOP_TIMEOUT seconds).
    assert state["ExitCode"] == 0, podman.logs(container)
    assert time.monotonic() - stopping < STOP_TIMEOUT
    assert "Server Shut Down." in podman.logs(container)


def test_key_ring_stays_in_the_volume_across_containers(podman: Podman, gateway_image: str) -> None:
    volume = f"wingman-test-state-{secrets.token_hex(4)}"
    options = ("--volume", f"{volume}:{STATE}")
    first, port = run_gateway(podman, gateway_image, *options, env={"WINGMAN_AUTH": "true"})
    assert healthy(podman, first, port)["auth"] == "required"
    token = podman.run("exec", first, "wingman", "gateway", "token", "--generate", "--subject", "alice").stdout.strip()
    assert member(port, "alice", "crew", token=token).node_id

    stranger = Node(f"ws://127.0.0.1:{port}/ws")
    expect_error(stranger.register("stranger", token="not-a-token"), "AUTH_FAILED",
                 "authentication failed: token not accepted")
    assert expect_closed(stranger) == (1008, "authentication failed: token not accepted")

    podman.run("stop", first, timeout=STOP_TIMEOUT + 30)
    second, port = run_gateway(podman, gateway_image, *options, env={"WINGMAN_AUTH": "true"})
    healthy(podman, second, port)
    alice = member(port, "alice", "crew", token=token)  # the same key ring, from the volume
    bob = member(port, "bob", "crew", token=token)
    assert_delivers(alice, bob, "crew")
    listing = podman.run("exec", second, "stat", "-c", "%a %U", f"{STATE}/keys.json").stdout.split()
    assert listing == ["600", "wingman"]


def test_config_file_and_environment_together(podman: Podman, gateway_image: str, tmp_path: Path) -> None:
    """A mounted config file; variables override it; HEALTHCHECK finds the file's listener."""
    port = free_tcp_port()
    config = tmp_path / "gateway.json"
    config.write_text(json.dumps({
        "listen": [f"tcp:{port}:interface=127.0.0.1"], "name": "from-file", "maxNodes": 1,
    }))
    config.chmod(0o644)
    container = podman.start(
        gateway_image, "--network", "host",
        "--volume", f"{config}:/etc/wingman-gateway/gateway.json:ro",
        "--env", "WINGMAN_CONFIG=/etc/wingman-gateway/gateway.json",
        "--env", "WINGMAN_LISTEN=",  # empty: the file's listeners apply
        "--env", "WINGMAN_NAME=from-environment",
    )
    report = healthy(podman, container, port)
    assert report["name"] == "from-environment"
    first = member(port, "first", "crew")
    second = Node(f"ws://127.0.0.1:{port}/ws")
    expect_error(second.register("second"), "MAX_NODES_REACHED", "gateway is full (1 nodes)")
    assert expect_closed(second) == (1013, "gateway is full (1 nodes)")
    assert first.request("ping")["type"] == "pong"


def test_bad_variable_stops_startup_naming_it(podman: Podman, gateway_image: str) -> None:
    container, port = run_gateway(podman, gateway_image, env={"WINGMAN_MAX_NODES": "lots"})
    state = podman.wait_exited(container)
    assert state["ExitCode"] != 0
    assert "WINGMAN_MAX_NODES: expected a whole number, got 'lots'" in podman.logs(container)


def test_healthcheck_reports_an_unreachable_gateway(podman: Podman, gateway_image: str) -> None:
    container, port = run_gateway(podman, gateway_image)
    healthy(podman, container, port)
    other = free_tcp_port()
    result = podman.run("exec", "--env", f"WINGMAN_LISTEN=tcp:{other}", container,
                        "python", "-m", "wingman_gateway.cli.healthcheck", check=False)
    assert result.returncode == 1
    assert result.stdout.startswith(f"unhealthy: http://127.0.0.1:{other}/health: Connection was refused")
