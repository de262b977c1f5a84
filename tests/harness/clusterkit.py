"""A real redis-server and clustered gateways for the cluster tests."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
import time
from typing import Any, Iterable, Iterator

from harness.background import Background, stop_all
from harness.relay import Relay
from harness.support import GatewayProcess, Node, free_tcp_port, http_get, start_gateway, wait_until

REDIS_SERVER = "/usr/bin/redis-server"


class RedisServer(Background):
    """``redis-server`` on a free loopback port, in a directory of its own, nothing saved."""

    def __init__(self, port: int | None = None, extra: Iterable[str] = (), tls: bool = False) -> None:
        """With ``tls`` the port speaks TLS only (``extra`` names the files)."""
        self.port = port or free_tcp_port()
        self.directory = tempfile.mkdtemp(prefix="wingman-redis-")
        self.extra = list(extra)
        self.tls = tls
        ports = ["--port", "0", "--tls-port", str(self.port)] if tls else ["--port", str(self.port)]
        super().__init__([
            REDIS_SERVER, *ports, "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", self.directory, *self.extra,
        ])
        self.wait_for("Ready to accept connections")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def restarted(self) -> "RedisServer":
        """A new server on the same port (after this one stopped)."""
        return RedisServer(self.port, self.extra, self.tls)


def start_member(redis_url: str, name: str, *args: str, env: dict[str, str] | None = None) -> GatewayProcess:
    return start_gateway("--cluster", redis_url, "--name", name, "--ping-timeout", "60000", *args, env=env)


@contextlib.contextmanager
def running_cluster(
    redis_url: str, names: Iterable[str] = ("gw1", "gw2", "gw3"), *args: str
) -> Iterator[list[GatewayProcess]]:
    """Gateways clustered on ``redis_url`` (each given ``args``), formed (each
    sees the others); stopped by pid afterwards."""
    started: list[GatewayProcess] = []
    try:
        for name in names:
            started.append(start_member(redis_url, name, *args))
        wait_formed(started)
        yield started
    finally:
        stop_all(started)


def health_of(gateway: GatewayProcess) -> dict[str, Any]:
    status, _, body = http_get(gateway, "/health")
    assert status == 200, body
    return json.loads(body)  # type: ignore[no-any-return]


def cluster_stats(gateway: GatewayProcess) -> dict[str, Any]:
    status, _, body = http_get(gateway, "/stats?scope=cluster")
    assert status == 200, body
    return json.loads(body)  # type: ignore[no-any-return]


def wait_formed(gateways: list[GatewayProcess], timeout: float = 10.0) -> None:
    """Every gateway is connected and sees all the others."""
    def formed() -> bool:
        for gateway in gateways:
            cluster = health_of(gateway)["cluster"]
            if cluster["state"] != "ok" or len(cluster["gateways"]) != len(gateways):
                return False
        return True

    wait_until(formed, timeout, f"a cluster of {len(gateways)} gateways")


def wait_node_count(gateway: GatewayProcess, count: int, timeout: float = 10.0) -> dict[str, Any]:
    """``/stats?scope=cluster`` on ``gateway`` lists exactly ``count`` nodes."""
    def reached() -> dict[str, Any] | None:
        stats = cluster_stats(gateway)
        return stats if stats["nodes"]["totalNodes"] == count else None

    return wait_until(reached, timeout, f"{count} nodes in the cluster")  # type: ignore[no-any-return]


def kill_hard(process: Background) -> None:
    """kill -9 by pid: no goodbye of any kind."""
    os.kill(process.pid, signal.SIGKILL)
    process.proc.wait(10)


def presence_events(envelope: dict[str, Any]) -> list[dict[str, Any]]:
    """The join and departure events of one ``presence`` envelope (a batch holds several)."""
    payload = envelope["payload"]
    if payload.get("event") == "batch":
        return [dict(event, groupId=envelope["groupId"]) for event in payload["events"]]
    return [payload]


def collect(node: Node, kind: str, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The next ``count`` envelopes of ``kind``, in order; others are held for a later collect."""
    held: list[dict[str, Any]] = node.__dict__.setdefault("_held", [])
    got = [message for message in held if message["type"] == kind][:count]
    for message in got:
        held.remove(message)
    deadline = time.monotonic() + timeout
    while len(got) < count:
        message = node.recv(max(deadline - time.monotonic(), 0.01))
        if message["type"] == kind:
            got.append(message)
        else:
            assert message["type"] in ("ping", "presence", "ack", "broadcast"), message
            held.append(message)
    return got


def expect_no_more(node: Node, kind: str, seconds: float = 0.5) -> None:
    """Nothing of ``kind`` arrives within ``seconds`` (nor was held back)."""
    held = node.__dict__.get("_held", [])
    assert [m for m in held if m["type"] == kind] == []
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        try:
            message = node.recv(left)
        except TimeoutError:
            return
        assert message["type"] != kind, f"duplicate: {message}"


def members_known(gateways: list[GatewayProcess], room: str, count: int, timeout: float = 5.0) -> None:
    """Every gateway sees ``count`` members in ``room``."""
    def known() -> bool:
        for gateway in gateways:
            rooms = {g["name"]: g for g in cluster_stats(gateway)["groups"]["groups"]}
            if rooms.get(room, {}).get("memberCount") != count:
                return False
        return True

    wait_until(known, timeout, f"{count} members of {room} on every gateway")


@contextlib.contextmanager
def relayed_cluster(
    names: Iterable[str], *args: str, lag_after: bytes | None = None, lag: float = 0.0
) -> Iterator[tuple[Relay, list[GatewayProcess]]]:
    """A redis-server of its own and gateways (given ``args``) that reach it
    through a ``Relay`` the test can hold or slow; formed. All stopped afterwards."""
    redis = RedisServer()
    relay = Relay(redis.port, lag_after, lag)
    started: list[GatewayProcess] = []
    try:
        url = f"redis://127.0.0.1:{relay.port}"
        started = [start_member(url, name, *args) for name in names]
        wait_formed(started)
        yield relay, started
    finally:
        stop_all(started)
        relay.stop()
        redis.stop()


def placed(gateways: list[GatewayProcess], room: str, where: dict[str, int]) -> list[Node]:
    """Nodes named as ``where`` says, each on its gateway (by index), registered and in ``room``."""
    nodes = []
    for name, index in where.items():
        node = Node(gateways[index].url)
        assert node.register(name)["type"] == "ack" and node.join(room)["type"] == "ack"
        nodes.append(node)
    members_known(gateways, room, len(nodes))
    return nodes
