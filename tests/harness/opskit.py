"""Operations tests: a gateway with its admin credential, metrics and audit log; a real Prometheus."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import urllib.parse
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from prometheus_client.parser import text_string_to_metric_families

from harness.background import Background
from harness.bridgekit import BridgeNode, Reply, call
from harness.sshkit import UserKey, environment_without_agent, ssh_command, write_authorized_keys
from harness.support import GatewayProcess, NodePool, free_tcp_port, start_gateway, wait_until

ADMIN_TOKEN = "admin-Zq8r5Lr0b1uT2vVq-token"
NODE_TOKEN = "node-token-7c2e91d5f3"
SITE_NAME = "ops-gw"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class OpsGateway:
    """A gateway with ``--admin-token-file``, ``--metrics-listen`` and ``--audit-log``."""

    def __init__(self, directory: Path, *args: str) -> None:
        self.directory = directory
        self.token_file = directory / "admin-token"
        self.token_file.write_text(ADMIN_TOKEN + "\n")
        self.token_file.chmod(0o600)
        self.audit_path = directory / "audit.log"
        self.process: GatewayProcess = start_gateway(
            "--admin-token-file", str(self.token_file),
            "--metrics-listen", "tcp:0:interface=127.0.0.1",
            "--audit-log", str(self.audit_path), *args,
        )
        self.metrics_port = int(self.process.bound["metrics"]["port"])  # type: ignore[index]

    @property
    def port(self) -> int:
        return self.process.port

    def api(self, method: str, path: str, body: Any = None, token: str | None = ADMIN_TOKEN) -> Reply:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = None if body is None else body if isinstance(body, (str, bytes)) else json.dumps(body)
        return call(self.port, method, "/api/" + path, data, headers)

    def scrape(self) -> Series:
        """``/metrics`` on the private endpoint, parsed by prometheus_client's own parser."""
        reply = call(self.metrics_port, "GET", "/metrics")
        assert reply.status == 200, reply
        assert reply.headers["content-type"].startswith("text/plain"), reply.headers
        return parse(reply.raw.decode("utf-8"))

    def audit(self) -> list[dict[str, Any]]:
        """The audit log's lines so far (each must be one JSON object)."""
        if not self.audit_path.exists():
            return []
        return [json.loads(line) for line in self.audit_path.read_text().splitlines()]

    def audited(self, event: str, timeout: float = 10.0, **fields: Any) -> dict[str, Any]:
        """The first audit line of ``event`` whose fields include ``fields`` (waited for)."""
        def found() -> dict[str, Any] | None:
            for entry in self.audit():
                if entry["event"] == event and all(entry.get(k) == v for k, v in fields.items()):
                    return entry
            return None

        return wait_until(found, timeout, f"an audit line {event} {fields}")  # type: ignore[no-any-return]

    def stop(self) -> None:
        self.process.stop()


class OpsSite:
    """An ``OpsGateway`` with auth (a shared node token and a key ring) and SSH, whose
    authorized keys hold ``alice``'s key (``stranger``'s is refused)."""

    def __init__(self, home: Path) -> None:
        self.keys = {name: UserKey(home, name) for name in ("alice", "stranger")}
        authorized = write_authorized_keys(home / "authorized_keys",
                                           self.keys["alice"].line('wingman-user="alice"'))
        self.ring = home / "keys.json"
        self.ops = OpsGateway(
            home, "--name", SITE_NAME, "--auth", "--token", NODE_TOKEN, "--keyring", str(self.ring),
            "--ssh", "tcp:0:interface=127.0.0.1", "--ssh-host-key", str(home / "host_key"),
            "--ssh-authorized-keys", str(authorized),
        )
        self.ssh_port = int(self.ops.process.bound["ssh"]["port"])  # type: ignore[index]
        self.secrets: list[str] = [ADMIN_TOKEN, NODE_TOKEN]

    @classmethod
    def running(cls, home: Path) -> Iterator["OpsSite"]:
        """For a fixture: the site, stopped when the fixture ends."""
        site = cls(home)
        try:
            yield site
        finally:
            site.ops.stop()

    def crowd(self) -> Iterator[NodePool]:
        """For a fixture: WebSocket nodes of the site, closed when the fixture ends."""
        nodes = NodePool(self.ops.process)
        try:
            yield nodes
        finally:
            nodes.close_all()

    def ssh(self, *args: str, key: str = "alice") -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            ssh_command(self.ssh_port, self.keys[key].path, *args), stdin=subprocess.DEVNULL,
            capture_output=True, timeout=30, env=environment_without_agent(),
        )


def admin_id() -> str:
    """How logs name the admin credential: ``admin:`` and 8 hex digits of its SHA-256."""
    return "admin:" + hashlib.sha256(ADMIN_TOKEN.encode()).hexdigest()[:8]


def bridge_member(ops: OpsGateway, room: str) -> BridgeNode:
    """A bridge node registered with the node token, in ``room``."""
    node = BridgeNode(ops.port)
    assert node.register("http", token=NODE_TOKEN).status == 200
    assert node.join(room).status == 200
    return node


def parse(text: str) -> Series:
    series: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return series


def value(series: Series, name: str, **labels: str) -> float:
    return series[(name, tuple(sorted(labels.items())))]


def total(series: Series, name: str) -> float:
    """The sum of every series of ``name`` (all label values)."""
    return sum(v for (n, _), v in series.items() if n == name)


class Prometheus(Background):
    """A real Prometheus on loopback scraping the gateway's private ``/metrics`` endpoint."""

    def __init__(self, directory: Path, target_port: int, interval: str = "500ms") -> None:
        self.port = free_tcp_port()
        config = directory / "prometheus.yml"
        config.write_text(
            "global:\n"
            f"  scrape_interval: {interval}\n"
            f"  scrape_timeout: {interval}\n"
            "scrape_configs:\n"
            "  - job_name: wingman\n"
            "    static_configs:\n"
            f"      - targets: ['127.0.0.1:{target_port}']\n"
        )
        super().__init__([
            PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn",
        ])
        wait_until(self._ready, 30, "Prometheus to be ready")

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited:\n{self.output}")
        try:
            return call(self.port, "GET", "/-/ready", timeout=2).status == 200
        except OSError:
            return False

    def query(self, expression: str) -> list[dict[str, Any]]:
        reply = call(self.port, "GET", "/api/v1/query?query=" + urllib.parse.quote(expression))
        assert reply.status == 200 and reply.body["status"] == "success", reply
        return reply.body["data"]["result"]  # type: ignore[no-any-return]

    def scalar(self, expression: str) -> float | None:
        """The single value of ``expression`` now, or None when it has no series."""
        result = self.query(expression)
        if not result:
            return None
        assert len(result) == 1, result
        return float(result[0]["value"][1])

    def reaches(self, expression: str, expected: float, timeout: float = 20.0) -> None:
        """Wait until ``expression`` has the value ``expected`` (scrapes land a little later)."""
        wait_until(lambda: self.scalar(expression) == expected, timeout,
                   f"Prometheus to show {expression} = {expected}")

    def scraped_after(self, moment: float, timeout: float = 20.0) -> None:
        """Wait for a successful scrape of the gateway that began after ``moment`` (time.time())."""
        def fresh() -> bool:
            reply = call(self.port, "GET", "/api/v1/targets")
            targets = reply.body["data"]["activeTargets"]
            return bool(targets) and all(
                t["health"] == "up" and _rfc3339(t["lastScrape"]) > moment for t in targets
            )

        wait_until(fresh, timeout, "a fresh Prometheus scrape")


def _rfc3339(text: str) -> float:
    """Seconds since the epoch of Prometheus' lastScrape (nanosecond RFC 3339, UTC offset)."""
    head, _, rest = text.partition(".")
    fraction = "".join(ch for ch in rest if ch.isdigit())[:6] or "0"
    zone = rest[len("".join(ch for ch in rest if ch.isdigit())):] if rest else text[19:]
    stamp = datetime.fromisoformat(head + "." + fraction.ljust(6, "0") + (
        "+00:00" if zone in ("Z", "") else zone))
    return stamp.timestamp()

