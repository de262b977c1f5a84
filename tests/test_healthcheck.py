"""The container's health check (python -m wingman_gateway.cli.healthcheck) against real gateways."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from harness.support import free_tcp_port, running_gateway
from wingman_gateway.cli.healthcheck import health_url

LOOPBACK = "tcp:0:interface=127.0.0.1"


@pytest.mark.parametrize("endpoints, url", [
    (["tcp:3000"], "http://127.0.0.1:3000/health"),
    (["tcp:3000:interface=0.0.0.0"], "http://127.0.0.1:3000/health"),
    (["tcp:port=4000:interface=10.1.2.3"], "http://10.1.2.3:4000/health"),
    (["tcp6:3000"], "http://[::1]:3000/health"),
    (["tcp:3000:interface=\\:\\:1"], "http://[::1]:3000/health"),
    (["ssl:3443:privateKey=key.pem:certKey=cert.pem"], "https://127.0.0.1:3443/health"),
    (["unix:/run/w.sock", "ssl:3443:privateKey=k.pem", "tcp:3001"], "http://127.0.0.1:3001/health"),
    (["unix:/run/w.sock", "systemd:domain=INET6:index=0"], None),
])
def test_the_checked_url_follows_the_listeners(endpoints: list[str], url: str | None) -> None:
    assert health_url(endpoints) == url


def healthcheck(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WINGMAN_")}
    return subprocess.run([sys.executable, "-m", "wingman_gateway.cli.healthcheck", *argv], env={**clean, **env},
                          capture_output=True, text=True, timeout=30)


def test_healthy_gateway_found_through_the_environment() -> None:
    with running_gateway("--name", "checked") as gateway:
        result = healthcheck({"WINGMAN_LISTEN": f"unix:/nonexistent.sock tcp:{gateway.port}:interface=127.0.0.1"})
    assert result.returncode == 0, result
    assert result.stdout.startswith("checked (wingman-gateway ")
    assert ": healthy\n" in result.stdout


def test_healthy_gateway_found_through_options() -> None:
    with running_gateway() as gateway:
        result = healthcheck({}, "--port", str(gateway.port), "--host", "127.0.0.1")
    assert result.returncode == 0, result


def test_unreachable_gateway_is_unhealthy() -> None:
    port = free_tcp_port()
    result = healthcheck({"WINGMAN_LISTEN": f"tcp:{port}"})
    assert result.returncode == 1
    assert result.stdout.startswith(f"unhealthy: http://127.0.0.1:{port}/health: Connection was refused")


def test_bad_configuration_is_unhealthy() -> None:
    result = healthcheck({"WINGMAN_MAX_NODES": "lots"})
    assert (result.returncode, result.stdout) == (
        1, "unhealthy: bad configuration: WINGMAN_MAX_NODES: expected a whole number, got 'lots'\n")


def test_nothing_to_check_is_unhealthy() -> None:
    result = healthcheck({"WINGMAN_LISTEN": "unix:/run/wingman.sock"})
    assert (result.returncode, result.stdout) == (
        1, "unhealthy: no TCP or TLS listener to check among unix:/run/wingman.sock\n")
