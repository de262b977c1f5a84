"""The JavaScript client given a cluster's gateways: what ranking them costs
at connect, and how long it takes to move when its gateway is killed.

    .venv/bin/python benchmarks/js_failover.py [--runs 5] [--rounds 20]

Every run starts its own redis-server and three clustered gateways and stops
them by PID. ``connect``: ``connect()`` then ``close()`` with the first URL
alone and with the list of three (the /health probes added), alternating,
median per run. ``failover``: a JavaScript node (WebSocket) and ``wingman
gateway join`` (the Python client: the baseline) are given the same three
URLs and land on the same gateway (each other one carries two idle nodes);
it is killed (-9); the time from the kill until each reports ``reconnected``
on another gateway. Both use their default backoff (0.5 s, full jitter up
to twice that for the first attempt), so a run's figure is mostly the
draw: compare medians. See benchmarks/README.rst.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from clusterbench import OTHER_CPU, Redis, member, wait_formed
from loadgen import _line
from procs import SERVER_CPU, Server, environment
from wsclient import Pool

HERE = Path(__file__).resolve().parent
CLIENT = HERE.parent / "wingman_gateway" / "web" / "static" / "wingman.js"
SCRIPT = HERE / "js_failover.mjs"
WINGMAN = str(Path(sys.executable).with_name("wingman"))


class Lines:
    """A process's stdout lines, each with the monotonic time it arrived."""

    def __init__(self, argv: list[str]) -> None:
        self.name = Path(argv[1] if argv[0] == "node" else argv[0]).name
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        self.lines: list[tuple[float, str]] = []
        self.seen = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.seen:
                self.lines.append((time.monotonic(), line.strip()))
                self.seen.notify_all()

    def wait(self, predicate: Any, timeout: float = 30.0) -> tuple[float, str]:
        deadline = time.monotonic() + timeout
        with self.seen:
            while True:
                for stamp, line in self.lines:
                    if predicate(line):
                        return stamp, line
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"no such line from {self.name} within {timeout} s")
                self.seen.wait(min(left, 0.2))

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)


def local_event(line: str, event: str) -> dict[str, Any] | None:
    """A ``wingman gateway join --json`` local event line, parsed."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) and record.get("event") == event else None


def one_run(rounds: int) -> dict[str, float]:
    redis = Redis()
    servers: list[Server] = []
    pool: Pool | None = None
    watchers: list[Lines] = []
    try:
        servers = [member(redis, name, cpu) for name, cpu in (("a", SERVER_CPU), ("b", OTHER_CPU), ("c", SERVER_CPU))]
        wait_formed(servers)
        urls = [f"ws://127.0.0.1:{server.port}/ws" for server in servers]
        done = subprocess.run(["node", str(SCRIPT), str(CLIENT), "connect", json.dumps(urls), str(rounds)],
                              capture_output=True, text=True, timeout=120, check=True)
        connects = json.loads(done.stdout)
        pool = Pool(servers[1].port, servers[2].port)
        pool.open_many(4, "idle")  # two on b, two on c: both clients take a
        js = Lines(["node", str(SCRIPT), str(CLIENT), "failover", json.dumps(urls)])
        watchers.append(js)
        js.wait(lambda line: line == f"CONNECTED {urls[0]}")
        py = Lines([WINGMAN, "gateway", "join", *urls, "--json", "--name", "py"])
        watchers.append(py)
        py.wait(lambda line: (local_event(line, "connected") or {}).get("url") == urls[0])
        os.kill(servers[0].pid, signal.SIGKILL)
        servers[0].proc.wait(10)
        killed = time.monotonic()
        js_back, _ = js.wait(lambda line: line.startswith("RECONNECTED ") and line != f"RECONNECTED {urls[0]}")
        py_back, _ = py.wait(lambda line: local_event(line, "reconnected") is not None)
        one = statistics.median(connects["one"])
        listed = statistics.median(connects["list"])
        return {
            "connect one ms": one, "connect list ms": listed, "list/one": listed / one,
            "failover js s": js_back - killed, "failover py s": py_back - killed,
            "js/py": (js_back - killed) / (py_back - killed),
        }
    finally:
        for watcher in watchers:
            watcher.stop()
        if pool is not None:
            pool.close_all()
        for server in reversed(servers):
            server.stop()
        redis.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=20, help="connects of each kind per run")
    options = parser.parse_args()
    for line in environment():
        print(line)
    print(f"\n== the JavaScript client over three clustered gateways ({options.runs} runs) ==")
    runs = []
    for index in range(options.runs):
        runs.append(one_run(options.rounds))
        print(_line(f"run {index + 1}", runs[-1]))
    print(_line("median", {key: statistics.median(run[key] for run in runs) for key in runs[0]}))


if __name__ == "__main__":
    main()
