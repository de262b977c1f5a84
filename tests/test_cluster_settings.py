"""``--cluster`` settings, credentials, TLS and bad input from Redis."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from harness.background import stop_all
from harness.clusterkit import RedisServer, health_of, start_member, wait_formed
from harness.support import TWISTD, GatewayProcess, NodePool, assert_delivers, make_pki, wait_until
from wingman_gateway.checks import ConfigError
from wingman_gateway.cluster.settings import cluster_settings, parse_url

SECRET = "s3cret-Redis-pw"


@pytest.mark.parametrize("url, message", [
    ("http://h:1", "cluster: expected a redis:// or rediss:// URL, got scheme 'http'"),
    ("redis://:pw@h:1", "cluster: a password in the URL would show in the process list and logs; "
                        "use --cluster-password-file or the REDISCLI_AUTH environment variable"),
    ("redis://h:1/x", "cluster: the URL's path must be a database number, got 'x'"),
    ("redis://h:99999", "cluster: bad port in the URL"),
    ("redis:///0", "cluster: the URL names no host"),
    ("redis://h:1?db=2", "cluster: the URL takes no query or fragment"),
])
def test_bad_urls_are_refused_with_a_reason(url: str, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_url("cluster", url)
    assert str(refused.value) == message


def test_url_parts_and_password_sources(tmp_path: Path) -> None:
    settings = parse_url("cluster", "rediss://ops@[::1]:7000/3")
    assert (settings.host, settings.port, settings.db, settings.tls, settings.username) == ("::1", 7000, 3, True, "ops")
    assert settings.url == "rediss://ops@[::1]:7000/3"
    secret = tmp_path / "pw"
    secret.write_text(SECRET + "\n")
    from_file = cluster_settings("redis://h", None, str(secret), None, environ={"REDISCLI_AUTH": "other"})
    assert from_file is not None and from_file.password == SECRET
    from_env = cluster_settings("redis://h", None, None, None, environ={"REDISCLI_AUTH": SECRET})
    assert from_env is not None and from_env.password == SECRET
    assert SECRET not in repr(from_env)
    with pytest.raises(ConfigError, match="clusterCa: a CA file needs a rediss:// URL"):
        cluster_settings("redis://h", str(secret), None, None, environ={})
    with pytest.raises(ConfigError, match="clusterCa: only makes sense with --cluster"):
        cluster_settings(None, str(secret), None, None, environ={})
    with pytest.raises(ConfigError, match="clusterAdvertise: expected ws://"):
        cluster_settings("redis://h", None, None, "ftp://x", environ={})


def test_the_gateway_refuses_a_password_on_the_command_line() -> None:
    done = subprocess.run(
        [TWISTD, "--nodaemon", "--pidfile=", "wingman-gateway", "--cluster", f"redis://:{SECRET}@127.0.0.1:1"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode != 0
    assert "a password in the URL would show in the process list and logs" in done.stdout + done.stderr
    assert SECRET not in done.stdout + done.stderr


@pytest.fixture
def locked_redis() -> Iterator[RedisServer]:
    server = RedisServer(extra=["--requirepass", SECRET])
    try:
        yield server
    finally:
        server.stop()


def test_password_from_file_or_environment_never_shown(locked_redis: RedisServer, tmp_path: Path) -> None:
    secret = tmp_path / "redis-password"
    secret.write_text(SECRET)
    started: list[GatewayProcess] = []
    try:
        started.append(start_member(locked_redis.url, "by-file", "--cluster-password-file", str(secret)))
        started.append(start_member(locked_redis.url, "by-env", env={"REDISCLI_AUTH": SECRET}))
        started.append(start_member(locked_redis.url, "wrong", env={"REDISCLI_AUTH": "wrong-password"}))
        wait_formed(started[:2])
        refused = wait_until(lambda: (lambda h: h if "WRONGPASS" in h["cluster"].get("reason", "") else None)(
            health_of(started[2])), 10, "the refusal reported")
        assert refused["status"] == "degraded" and refused["cluster"]["state"] == "connecting"
        for gateway in started:
            assert SECRET not in gateway.log
            assert SECRET not in json.dumps(health_of(gateway))
        # The refused gateway still serves its own nodes.
        pool = NodePool(started[2])
        try:
            a, b = pool("a", "solo"), pool("b", "solo")
            assert_delivers(a, b, "solo")
        finally:
            pool.close_all()
    finally:
        stop_all(started)


def test_rediss_with_a_ca_file(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    server = RedisServer(extra=[
        "--tls-cert-file", str(pki.cert), "--tls-key-file", str(pki.key),
        "--tls-ca-cert-file", str(pki.ca), "--tls-auth-clients", "no",
    ], tls=True)
    started: list[GatewayProcess] = []
    try:
        url = f"rediss://127.0.0.1:{server.port}"
        started.append(start_member(url, "tls", "--cluster-ca", str(pki.ca)))
        wait_until(lambda: health_of(started[0])["cluster"]["state"] == "ok", 10, "a TLS link")
        other_ca = make_pki(tmp_path / "other")
        started.append(start_member(url, "untrusting", "--cluster-ca", str(other_ca.ca)))
        reason = wait_until(lambda: (lambda r: r if "certificate" in r else None)(
            health_of(started[1])["cluster"].get("reason", "")), 10, "a reason")
        assert health_of(started[1])["cluster"]["state"] == "connecting", reason
        assert "certificate verify failed" in reason, reason
    finally:
        stop_all(started + [server])


def test_garbage_from_redis_is_ignored(tmp_path: Path) -> None:
    server = RedisServer()
    started: list[GatewayProcess] = []
    try:
        started = [start_member(server.url, "g1"), start_member(server.url, "g2")]
        wait_formed(started)
        gateway_id = health_of(started[0])["cluster"]["gatewayId"]
        for channel, message in (("wingman:0:directory", "not json"), ("wingman:0:directory", '{"gw": "x", "seq": "q"}'),
                                 (f"wingman:0:inbox:{gateway_id}", "Bnoroom \xff"), (f"wingman:0:inbox:{gateway_id}", "")):
            subprocess.run(["redis-cli", "-p", str(server.port), "PUBLISH", channel, message],
                           check=True, capture_output=True, timeout=10)
        started[0].wait_for("unreadable directory event ignored")
        started[0].wait_for("a message from .* could not be handled")
        pools = [NodePool(started[0]), NodePool(started[1])]
        try:
            a = pools[0]("a", "after")
            b = pools[1]("b")
            wait_until(lambda: b.request("join_group", {"groupName": "after"})["type"] == "ack", 2, "shared room")
            assert a.recv_type("presence")["nodeId"] == b.node_id  # gw1 knows b is a member
            assert_delivers(a, b, "after")
        finally:
            for pool in pools:
                pool.close_all()
    finally:
        stop_all(started + [server])


def test_discover_lists_the_registry(tmp_path: Path) -> None:
    server = RedisServer()
    started: list[GatewayProcess] = []
    try:
        started = [start_member(server.url, "east"), start_member(server.url, "west")]
        wait_formed(started)
        pool = NodePool(started[0])
        pool("busy")
        wait_until(lambda: health_of(started[1])["cluster"]["gateways"][1]["nodes"] == 1, 3, "load seen")
        def listed() -> list[dict[str, Any]] | None:
            done = subprocess.run([sys.executable, "-m", "wingman_gateway", "gateway", "discover", "--cluster",
                                   server.url, "--json"], capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
            found = json.loads(done.stdout)
            return found if [g["load"] for g in found] == [0, 1] else None  # the entries are refreshed each second

        found = wait_until(listed, 5, "the load listed")
        assert [(g["name"], g["source"], g["urls"]) for g in found] == [
            ("west", "cluster", [started[1].url]), ("east", "cluster", [started[0].url])]
        text = subprocess.run([sys.executable, "-m", "wingman_gateway", "gateway", "discover", "--cluster", server.url],
                              capture_output=True, text=True, timeout=60).stdout
        assert "found 2 gateways on the cluster registry:" in text
        assert f"east  (wingman-gateway" in text and "via cluster, 1 node)" in text
        pool.close_all()
        missing = subprocess.run([sys.executable, "-m", "wingman_gateway", "gateway", "discover", "--cluster",
                                  "redis://127.0.0.1:1", "--timeout", "1000"], capture_output=True, text=True, timeout=60)
        assert missing.returncode == 1
        assert "wingman: cluster discovery failed: cannot reach redis://127.0.0.1:1/0" in missing.stderr
    finally:
        stop_all(started + [server])
