"""Cluster benchmarks: fan-out and latency across two gateways, and a reconnect storm.

    .venv/bin/python benchmarks/clusterbench.py [fanout|rate|storm|history|all] [--runs 3] [--duration S]

Every run starts its own redis-server and gateways (``--cluster``) and
stops them by PID. Each figure for a room split over two gateways is
measured in the same run as the same room on one gateway (also in cluster
mode). See benchmarks/README.rst for the placement of processes on cores.
"""

from __future__ import annotations

import argparse
import json
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

from loadgen import _line, _median
from procs import GENERATOR_CPU, SERVER_CPU, Server, calibrate, environment, pin, raise_nofile, start_gateway
from scenarios import fanout, rate
from wsclient import Pool

REDIS_SERVER = "/usr/bin/redis-server"
# The second gateway's core in the storm: the generator's (there are two).
OTHER_CPU = GENERATOR_CPU


class Redis:
    """A redis-server of this run: free loopback port, own directory, nothing saved."""

    def __init__(self, cpu: int = SERVER_CPU) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.directory = tempfile.mkdtemp(prefix="bench-redis-")
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.directory],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, preexec_fn=lambda: pin(cpu),
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not start")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)


def member(redis: Redis, name: str, cpu: int, max_nodes: int = 1000, options: tuple[str, ...] = ()) -> Server:
    # Long heartbeats: the generator waits for a quiet machine without servicing its nodes.
    extra = ("--cluster", redis.url, "--name", name, "--ping-interval", "300000", "--ping-timeout", "600000")
    return start_gateway(max_nodes, extra + options, cpu=cpu, label=name)


def get_json(server: Server, path: str) -> Any:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request("GET", path)
        return json.loads(connection.getresponse().read())
    finally:
        connection.close()


def wait_formed(servers: list[Server], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(len(get_json(s, "/health")["cluster"]["gateways"]) == len(servers) for s in servers):
            return
        time.sleep(0.1)
    raise RuntimeError("the cluster did not form")


def one_and_two(runs: int, measure: Any, title: str, notes: list[str], second: int) -> None:
    """``measure(first, more)`` on one gateway, then on two, ``runs`` times; medians and ratios."""
    print(f"\n== {title} ==")
    for note in notes:
        print(f"  {note}")
    single_runs, split_runs = [], []
    for run in range(1, runs + 1):
        print(f" run {run}/{runs}")
        redis = Redis()
        try:
            one = member(redis, "one", SERVER_CPU)
            try:
                single_runs.append(measure(one, ()))
            finally:
                one.stop()
            print(_line("1 gateway", single_runs[-1]), flush=True)
            first, other = member(redis, "first", SERVER_CPU), member(redis, "second", second)
            try:
                wait_formed([first, other])
                split_runs.append(measure(first, (other,)))
            finally:
                other.stop()
                first.stop()
            for key in ("deliveries/s", "p50 ms", "p99 ms"):
                if key in split_runs[-1]:
                    split_runs[-1][f"{key} 2/1"] = split_runs[-1][key] / single_runs[-1][key]
            print(_line("2 gateways", split_runs[-1]), flush=True)
        finally:
            redis.stop()
    print(" median")
    print(_line("1 gateway", _median(single_runs)))
    print(_line("2 gateways", _median(split_runs)))


def _senders_first(index: int) -> int:
    """Fan-out placement on two gateways: senders (0-9) on the first, the others alternate."""
    return 0 if index < 10 else index % 2


def run_fanout(runs: int, duration: float, warmup: float, window: int, second: int) -> None:
    one_and_two(
        runs,
        lambda first, more: fanout(first, duration, warmup, window=window, more=more,
                                    place=_senders_first if more else None),
        f"cluster fanout: 100 nodes in one room, 10 senders x window {window}",
        ["1 gateway: all 100 on it (core 0); 2 gateways: the 10 senders on the first, the 90 others",
         "alternating (the probe, which paces the senders, on the second: every message crosses)",
         f"first gateway + redis on core 0, second gateway on core {second} (generator: core 1)"],
        second,
    )


def run_rate(runs: int, duration: float, second: int) -> None:
    one_and_two(
        runs,
        lambda first, more: rate(first, duration, more=more),
        "cluster latency: 1000 msg/s into a 50-member room (1000 nodes registered)",
        ["2 gateways: members alternate, so half of all deliveries cross Redis",
         f"first gateway + redis on core 0, second gateway on core {second}; generator on core 1",
         "goal: p99 under 5 ms with the room split over 2 gateways"],
        second,
    )


HISTORY_MODES = (("history off", ("--history-size", "0")), ("history on", ()))


def run_history(runs: int, duration: float, warmup: float, window: int, second: int) -> None:
    """fanout and rate on two gateways, room history in Redis off and on (the default 100), each run."""
    print("\n== cluster history: two gateways, --history-size 0 vs the default (100, kept in Redis) ==")
    print("  fanout and rate as above (two-gateway placement); ratios on/off within each run")
    figures: dict[tuple[str, str], list[Any]] = {}
    for run in range(1, runs + 1):
        print(f" run {run}/{runs}")
        for label, options in HISTORY_MODES:
            for scenario in ("fanout", "rate"):
                redis = Redis()
                core = second if scenario == "fanout" else SERVER_CPU
                first = member(redis, "first", SERVER_CPU, options=options)
                other = member(redis, "second", core, options=options)
                try:
                    wait_formed([first, other])
                    if scenario == "fanout":
                        result = fanout(first, duration, warmup, window=window, more=(other,),
                                        place=_senders_first)
                    else:
                        result = rate(first, duration, more=(other,))
                finally:
                    other.stop()
                    first.stop()
                    redis.stop()
                figures.setdefault((scenario, label), []).append(result)
                print(_line(f"{scenario} {label}", result), flush=True)
    print(" median")
    for scenario, keys in (("fanout", ("deliveries/s",)), ("rate", ("p50 ms", "p99 ms"))):
        for label, _ in HISTORY_MODES:
            print(_line(f"{scenario} {label}", _median(figures[scenario, label])))
        for key in keys:
            ratios = sorted(on[key] / off[key] for on, off in zip(figures[scenario, "history on"],
                                                                  figures[scenario, "history off"]))
            print(f"  {scenario} {key} on/off per run: {', '.join(f'{r:.3f}' for r in ratios)}; "
                  f"median {ratios[len(ratios) // 2]:.3f}")


def storm(nodes: int, rooms: int) -> dict[str, float]:
    """``nodes`` on a gateway that is killed; they reconnect to the two others at once."""
    redis = Redis()
    servers: list[Server] = []
    pools: list[Pool] = []
    try:
        servers = [member(redis, "a", SERVER_CPU, nodes + 100), member(redis, "b", OTHER_CPU, nodes + 100),
                   member(redis, "doomed", SERVER_CPU, nodes + 100)]
        wait_formed(servers)
        doomed = servers[2]
        pools.append(Pool(doomed.port))
        conns = pools[-1].open_many(nodes, "storm")
        join = lambda conn: {"type": "join_group",  # noqa: E731
                             "payload": {"groupName": f"room{conn.index % rooms}", "createIfNotExists": True}}
        pools[-1].request(conns, join)
        watcher = servers[0]
        _wait_nodes(watcher, nodes, 30)
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.proc.wait(10)
        killed = time.monotonic()
        pools[-1].close_all()
        pools.append(Pool(servers[0].port, servers[1].port))
        conns = pools[-1].open_many(nodes, "again")
        registered = time.monotonic()
        pools[-1].request(conns, join)
        rejoined = time.monotonic()
        _wait_nodes(watcher, nodes, 30, members=nodes)
        agreed = time.monotonic()
        return {
            "registered s": registered - killed,
            "rejoined s": rejoined - killed,
            "cluster agrees s": agreed - killed,
            "nodes": nodes,
            "rooms": rooms,
        }
    finally:
        for pool in pools:
            pool.close_all()
        for server in reversed(servers):
            server.stop()
        redis.stop()


def _wait_nodes(server: Server, nodes: int, timeout: float, members: int | None = None) -> None:
    """Until the cluster as ``server`` sees it holds ``nodes`` nodes (and ``members`` memberships).

    ``/health`` (cheap) is asked every 0.1 s; ``/stats?scope=cluster`` (a
    large answer) only then, every 0.25 s, for the memberships.
    """
    deadline = time.monotonic() + timeout
    seen = joined = -1
    while time.monotonic() < deadline:
        gateways = get_json(server, "/health")["cluster"]["gateways"]
        seen = sum(g["nodes"] for g in gateways)
        if seen == nodes:
            break
        time.sleep(0.1)
    while members is not None and time.monotonic() < deadline:
        stats = get_json(server, "/stats?scope=cluster")
        seen = stats["nodes"]["totalNodes"]
        joined = sum(g["memberCount"] for g in stats["groups"]["groups"])
        if seen == nodes and joined == members:
            return
        time.sleep(0.25)
    if seen != nodes or (members is not None and joined != members):
        raise RuntimeError(f"{server.label}: {seen} nodes ({joined} memberships), not {nodes} within {timeout:g} s")


def run_storm(runs: int, nodes: int, rooms: int) -> None:
    print(f"\n== reconnect storm: {nodes} nodes in {rooms} rooms on a gateway killed with -9 ==")
    print("  they reconnect at once, alternating over the two other gateways (40 set-ups in flight);")
    print("  times from the kill: all registered, all rejoined (acks), the survivors' cluster view complete")
    figures = []
    for run in range(1, runs + 1):
        figures.append(storm(nodes, rooms))
        print(_line(f"run {run}/{runs}", figures[-1]), flush=True)
    print(_line("median", _median(figures)))


def _exit_on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Wingman Gateway cluster benchmarks (see benchmarks/README.rst)")
    parser.add_argument("scenario", nargs="?", default="all", choices=["fanout", "rate", "storm", "history", "all"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds (fanout, rate)")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--nodes", type=int, default=2000, help="nodes in the reconnect storm")
    parser.add_argument("--rooms", type=int, default=20, help="rooms in the reconnect storm")
    parser.add_argument("--second-core", type=int, choices=(0, 1),
                        help="core of the second gateway in fanout and rate (1: shared with the generator; "
                             "default: 1 for fanout, two cores of gateway, and 0 for rate, an undisturbed generator)")
    args = parser.parse_args(argv)
    if not (0 < args.duration <= 120 and 1 <= args.runs <= 20 and 1 <= args.nodes <= 10000
            and 1 <= args.rooms <= 1000 and 1 <= args.window <= 1000 and 0 <= args.warmup <= 30):
        parser.error("bounds: 0 < --duration <= 120, 1 <= --runs <= 20, 1 <= --nodes <= 10000, "
                     "1 <= --rooms <= 1000, 1 <= --window <= 1000, 0 <= --warmup <= 30")
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit_on_signal)
    raise_nofile()
    pin(GENERATOR_CPU)
    began = time.monotonic()
    for line in environment():
        print(line)
    print(calibrate())
    if args.scenario in ("fanout", "all"):
        run_fanout(args.runs, args.duration, args.warmup, args.window,
                   GENERATOR_CPU if args.second_core is None else args.second_core)
    if args.scenario in ("rate", "all"):
        run_rate(args.runs, args.duration, SERVER_CPU if args.second_core is None else args.second_core)
    if args.scenario in ("history", "all"):
        run_history(args.runs, args.duration, args.warmup, args.window,
                    GENERATOR_CPU if args.second_core is None else args.second_core)
    if args.scenario in ("storm", "all"):
        run_storm(args.runs, args.nodes, args.rooms)
    print(f"\ntotal time {time.monotonic() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
