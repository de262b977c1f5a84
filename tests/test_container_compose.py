"""compose.yaml: three clustered gateways and a Redis, run with podman-compose.

The gateway image is the one built for test_container.py; Redis comes from
Debian (redis-server on the same debootstrapped base), since no image
registry is reachable. The published ports are free loopback ports chosen
by the test (GATEWAY1_PORT, ...), the network is the project's own and is
removed afterwards.
"""

from __future__ import annotations

import os
import secrets
import shlex
import subprocess
from typing import Iterator

import pytest

from harness.podmankit import BASE_IMAGE, BUILD_TIMEOUT, REPOSITORY, Podman, tool
from harness.support import Node, free_tcp_port, wait_healthy

REDIS = f"""FROM {BASE_IMAGE}
RUN apt-get update && apt-get install -y --no-install-recommends redis-server \\
 && rm -rf /var/lib/apt/lists/*
"""


@pytest.fixture(scope="module")
def redis_image(podman: Podman, gateway_image: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """redis-server from Debian, on the base the gateway image was built on."""
    context = tmp_path_factory.mktemp("redis-image")
    (context / "Containerfile").write_text(REDIS)
    podman.build(context, "localhost/wingman-test-redis:latest")
    return "localhost/wingman-test-redis:latest"


@pytest.fixture
def cluster(podman: Podman, gateway_image: str, redis_image: str) -> Iterator[list[int]]:
    """``podman-compose up`` on compose.yaml; the three gateways' published ports."""
    project = f"wingmantest{secrets.token_hex(4)}"
    ports = [free_tcp_port() for _ in range(3)]
    env = {
        **os.environ, "CONTAINERS_CONF": str(podman.conf),
        "WINGMAN_IMAGE": gateway_image, "REDIS_IMAGE": redis_image,
        **{f"GATEWAY{n}_PORT": str(port) for n, port in enumerate(ports, 1)},
    }
    compose = [tool("podman-compose"), "--podman-args", shlex.join(podman.base[1:]),
               "--project-name", project, "--file", str(REPOSITORY / "compose.yaml")]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*compose, *args], env=env, capture_output=True, text=True,
                              timeout=BUILD_TIMEOUT)

    up = run("up", "--detach", "--no-build")
    try:
        listed = podman.run("ps", "--all", "--quiet", "--filter", f"label=io.podman.compose.project={project}")
        podman.containers.extend(listed.stdout.split())
        assert up.returncode == 0, (up.stdout[-4000:], up.stderr[-4000:])
        yield ports
    finally:
        run("down", "--volumes")
        podman.run("network", "rm", "--force", f"{project}_default", check=False)


PING_REDIS = """
import socket
with socket.create_connection(("redis", 6379), timeout=5) as redis:
    redis.sendall(b"PING\\r\\n")
    print(redis.recv(64).decode().strip())
"""


def test_a_broadcast_crosses_the_three_gateways(podman: Podman, cluster: list[int]) -> None:
    for number, port in enumerate(cluster, 1):
        try:
            report = wait_healthy(f"http://127.0.0.1:{port}/health", timeout=60)
        except AssertionError as error:
            logs = {name: podman.logs(name)[-2000:] for name in podman.containers[-4:]}
            raise AssertionError(f"gateway-{number}: {error}; container logs: {logs}") from None
        assert report["name"] == f"gateway-{number}"
    for container in podman.containers[-4:]:
        labels = podman.inspect(container)["Config"]["Labels"]
        if labels["com.docker.compose.service"].startswith("gateway-"):
            # The backplane is reachable by its service name from every gateway.
            assert podman.run("exec", container, "python", "-c", PING_REDIS).stdout.strip() == "+PONG"
    nodes = []
    for name, port in zip(("alice", "bob", "carol"), cluster):
        node = Node(f"ws://127.0.0.1:{port}/ws")
        assert node.register(name)["type"] == "ack"
        assert node.join("crew")["type"] == "ack"
        nodes.append(node)
    # Each broadcast reaches the members on both other gateways, exactly as sent.
    for sender in nodes:
        marker = {"check": f"from {sender.node_id}"}
        ack = sender.request("broadcast", {"groupId": "crew", "message": marker})
        assert ack["type"] == "ack" and ack["payload"]["recipients"] == 2, ack
        for receiver in nodes:
            if receiver is not sender:
                got = receiver.recv_type("broadcast")
                assert got["payload"] == marker and got["fromNodeId"] == sender.node_id, got
