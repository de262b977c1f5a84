"""Load generator for the Wingman Gateway: fan-out, paced latency, idle memory.

Usage: python benchmarks/loadgen.py [fanout|rate|memory|storm|bigroom|presence|history|all] [--runs 3] [--duration S] [--metrics]

Starts each server it measures itself (pinned to core 0; this process pins
itself to core 1), runs every scenario ``--runs`` times on a fresh server,
and prints each run's figures and the median. See benchmarks/README.rst.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from procs import (  # noqa: E402
    GENERATOR_CPU,
    Server,
    calibrate,
    environment,
    pin,
    raise_nofile,
    start_autobahn,
    start_baseline,
    start_gateway,
)
from scenarios import Figures, fanout, memory, rate  # noqa: E402
from storms import presence, reconnect, setup_rate  # noqa: E402

# -- running and reporting ------------------------------------------------------


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:
            return "n/a"
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _line(label: str, figures: Figures, width: int = 118) -> str:
    """``label  key value  key value ...``, wrapped; CPU shares as percentages of one core."""
    parts = []
    for key, value in figures.items():
        if key.endswith(("CPU", "waited")):
            parts.append(f"{key} {value * 100:.0f}%")
        else:
            parts.append(f"{key} {_fmt(value)}")
    lines = [f"  {label:<9}"]
    for part in parts:
        if len(lines[-1]) + 2 + len(part) > width:
            lines.append(" " * 11)
        lines[-1] += "  " + part
    return "\n".join(lines)


def _median(runs: list[Figures]) -> Figures:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def _profile_path(pid: int) -> Path:
    return Path(f"/tmp/bench-gateway-{pid}.pyspy.txt")


def _profile(pyspy: str, pid: int, seconds: float) -> subprocess.Popen[bytes]:
    """Sample the gateway with py-spy (not pausing it) while it is measured."""
    out = _profile_path(pid)
    return subprocess.Popen(
        [pyspy, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))), "--nonblocking",
         "--format", "raw", "--nolineno", "--rate", "200", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=lambda: pin(GENERATOR_CPU),
    )


def _report_profile(path: Path, top: int = 20) -> None:
    """Top functions by own (leaf) samples, from py-spy's collapsed stacks."""
    if not path.exists():
        print(f"  (no profile written to {path}: is py-spy allowed to attach?)")
        return
    own: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        leaf = stack.rsplit(";", 1)[-1]
        own[leaf] = own.get(leaf, 0) + int(count)
        total += int(count)
    print(f"  gateway profile (py-spy, {total} busy samples, {path}): top functions by own time")
    for leaf, samples in sorted(own.items(), key=lambda item: -item[1])[:top]:
        print(f"    {samples / max(total, 1) * 100:5.1f}%  {leaf}")


def _spied_fanout(server: Server, duration: float, warmup: float, window: int, pyspy: str | None) -> Figures:
    """``fanout`` with py-spy sampling the server over the measured interval, if asked."""
    spies: list[subprocess.Popen[bytes]] = []
    hook = (lambda: spies.append(_profile(pyspy, server.pid, duration))) if pyspy else None
    try:
        return fanout(server, duration, warmup, window=window, on_measure=hook)
    finally:
        for spy in spies:
            try:
                spy.wait(duration + 30)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait()
        if spies:
            _report_profile(_profile_path(server.pid))


def _cpu_per_delivery(figures: Figures) -> float:
    """The server's CPU microseconds per delivery (steadier than throughput when others load the machine)."""
    return figures["server CPU"] / figures["deliveries/s"] * 1e6


def _metered_fanout(duration: float, warmup: float, window: int) -> Figures:
    """One fan-out run against a gateway keeping metrics (--metrics-listen)."""
    server = start_gateway(max_nodes=1000, options=("--metrics-listen", "tcp:0:interface=127.0.0.1"))
    try:
        figures = fanout(server, duration, warmup, window=window)
    finally:
        server.stop()
    figures["server us/delivery"] = _cpu_per_delivery(figures)
    return figures


def run_fanout(runs: int, duration: float, warmup: float, window: int, headroom: int, pyspy: str | None,
               metrics: bool = False) -> None:
    print(f"\n== fanout: 100 nodes in one room, 10 senders x window {window}, "
          f"{warmup:g} s warm-up + {duration:g} s measured ==")
    print("  deliveries: every broadcast frame on all 100 connections, counted by frame header")
    print("  latency: every broadcast of 5 fixed non-sending receivers (one is the probe)")
    base_runs, gw_runs, metered_runs = [], [], []
    for run in range(1, runs + 1):
        print(f" run {run}/{runs}")
        server = start_baseline()
        try:
            base_runs.append(fanout(server, duration, warmup, window=window))
        finally:
            server.stop()
        print(_line("baseline", base_runs[-1]), flush=True)
        # With --metrics, every other run measures the metered gateway first,
        # so a machine getting busier or quieter favours neither.
        metered_first = metrics and run % 2 == 0
        if metered_first:
            metered_runs.append(_metered_fanout(duration, warmup, window))
        server = start_gateway(max_nodes=1000)
        try:
            gw_runs.append(_spied_fanout(server, duration, warmup, window, pyspy if run == 1 else None))
        finally:
            server.stop()
        gw_runs[-1]["gateway/baseline"] = gw_runs[-1]["deliveries/s"] / base_runs[-1]["deliveries/s"]
        if metrics:
            gw_runs[-1]["server us/delivery"] = _cpu_per_delivery(gw_runs[-1])
        print(_line("gateway", gw_runs[-1]), flush=True)
        if metrics:
            if not metered_first:
                metered_runs.append(_metered_fanout(duration, warmup, window))
            metered = metered_runs[-1]
            metered["metrics/off"] = metered["deliveries/s"] / gw_runs[-1]["deliveries/s"]
            metered["CPU metrics/off"] = (
                metered["server us/delivery"] / gw_runs[-1]["server us/delivery"]
            )
            print(_line("metrics", metered), flush=True)
    print(" median")
    print(_line("baseline", _median(base_runs)))
    print(_line("gateway", _median(gw_runs)))
    if metrics:
        print(_line("metrics", _median(metered_runs)))
        print("  target: metrics on within 5% of metrics off (metrics/off >= 0.95; the server's CPU")
        print("  per delivery, CPU metrics/off <= 1.05, is the steadier figure on a busy machine)")
    print("  target: gateway >= 600,000 deliveries/s")
    if headroom:
        print(f" generator headroom: the baseline with window {headroom} (enough in flight to keep it busy)")
        server = start_baseline()
        try:
            print(_line("baseline", fanout(server, duration, warmup, window=headroom)), flush=True)
        finally:
            server.stop()


def run_rate(runs: int, duration: float) -> None:
    print(f"\n== rate: 1000 nodes, 50 in one room, 10 senders paced to 1000 msg/s, 1 s warm-up + {duration:g} s ==")
    print("  latency: every delivery (49 per message) of messages sent after warm-up")
    results = []
    for run in range(1, runs + 1):
        server = start_gateway(max_nodes=1100)
        try:
            results.append(rate(server, duration))
        finally:
            server.stop()
        print(_line(f"run {run}/{runs}", results[-1]), flush=True)
    print(_line("median", _median(results)))
    print("  target: p99 < 2 ms")


def run_memory(runs: int) -> None:
    print("\n== memory: gateway VmRSS with idle registered nodes (no rooms) ==")
    results = []
    for run in range(1, runs + 1):
        results.append(memory())
        print(_line(f"run {run}/{runs}", results[-1]), flush=True)
    print(_line("median", _median(results)))
    print("  target: <= 6 KB per idle node at 10,000 (RSS delta / nodes)")


def run_storm(runs: int, nodes: int = 5000, concurrency: int = 200, backlog: int = 4096,
              storm: int = 10000, rooms: int = 100) -> None:
    print(f"\n== storm: {nodes} nodes set up, {concurrency} at a time (listen backlog {backlog}); "
          f"then {storm} at once into {rooms} rooms ==")
    print("  baseline: bare Autobahn, handshake only; gateway: handshake + register")
    base_runs, gw_runs, back_runs = [], [], []
    for run in range(1, runs + 1):
        print(f" run {run}/{runs}")
        server = start_autobahn(backlog=backlog)
        try:
            base_runs.append(setup_rate(server, nodes, concurrency, upgrade_only=True))
        finally:
            server.stop()
        print(_line("autobahn", base_runs[-1]), flush=True)
        server = start_gateway(max_nodes=nodes + 100)
        try:
            gw_runs.append(setup_rate(server, nodes, concurrency))
        finally:
            server.stop()
        gw_runs[-1]["gateway/autobahn"] = gw_runs[-1]["nodes/s"] / base_runs[-1]["nodes/s"]
        # The same ratio in the server's CPU time per node (autobahn's over the gateway's).
        gw_runs[-1]["CPU gateway/autobahn"] = base_runs[-1]["server us/node"] / gw_runs[-1]["server us/node"]
        print(_line("gateway", gw_runs[-1]), flush=True)
        server = start_gateway(max_nodes=storm + 100)
        try:
            back_runs.append(reconnect(server, storm, rooms))
        finally:
            server.stop()
        print(_line("reconnect", back_runs[-1]), flush=True)
    print(" median")
    print(_line("autobahn", _median(base_runs)))
    print(_line("gateway", _median(gw_runs)))
    print(_line("reconnect", _median(back_runs)))
    print("  targets: gateway >= 5,000 nodes/s and >= 1.5x autobahn; reconnect all back within 3 s")


def run_bigroom(runs: int, duration: float, warmup: float, window: int) -> None:
    print(f"\n== bigroom: fanout with 100 and with 1000 members, 10 senders x window {window}, "
          f"{warmup:g} s warm-up + {duration:g} s measured ==")
    small, big = [], []
    for run in range(1, runs + 1):
        for members, results in ((100, small), (1000, big)):
            server = start_gateway(max_nodes=1100)
            try:
                figures = fanout(server, duration, warmup, nodes=members, window=window)
            finally:
                server.stop()
            # Each message reaches members - 1 nodes: its p99 per delivery.
            figures["p99 us/delivery"] = figures["p99 ms"] * 1000 / (members - 1)
            results.append(figures)
            print(_line(f"{members} r{run}", figures), flush=True)
    print(" median")
    print(_line("100", _median(small)))
    print(_line("1000", _median(big)))
    print(f"  1000/100: deliveries/s {_median(big)['deliveries/s'] / _median(small)['deliveries/s']:.2f}x, "
          f"p99 per delivery {_median(big)['p99 us/delivery'] / _median(small)['p99 us/delivery']:.2f}x")


def run_presence(runs: int, sizes: tuple[int, ...] = (500, 1000)) -> None:
    print(f"\n== presence: {' and '.join(map(str, sizes))} registered nodes join one room one after another ==")
    results: dict[int, list[Figures]] = {size: [] for size in sizes}
    for run in range(1, runs + 1):
        for size in sizes:
            server = start_gateway(max_nodes=size + 100)
            try:
                results[size].append(presence(server, size))
            finally:
                server.stop()
            print(_line(f"{size} r{run}", results[size][-1]), flush=True)
    print(" median")
    for size in sizes:
        print(_line(str(size), _median(results[size])))
    first, last = sizes[0], sizes[-1]
    growth = _median(results[last])["peak RSS growth MB"] / max(_median(results[first])["peak RSS growth MB"], 1e-3)
    print(f"  peak growth {last}/{first} nodes: {growth:.2f}x (linear {last / first:.0f}x, "
          f"quadratic {(last / first) ** 2:.0f}x)")
# Room history off (stateless) against on with the default sizes, in the same run.
# Both with a heartbeat longer than the wait for a quiet machine, during
# which the generator reads nothing.
_PATIENT = ("--ping-interval", "300000", "--ping-timeout", "600000")
HISTORY_VARIANTS = (("history off", ("--history-size", "0", *_PATIENT)), ("history on", _PATIENT))


def run_history(runs: int, duration: float, warmup: float, window: int) -> None:
    print(f"\n== history: fanout and rate, room history off (--history-size 0) vs on (defaults), "
          f"alternating, {runs} runs each ==")
    figures: dict[tuple[str, str], list[dict[str, float]]] = {}
    for run in range(1, runs + 1):
        print(f" run {run}/{runs}")
        # Alternate which goes first, so neither always meets the same load.
        for label, options in HISTORY_VARIANTS[:: 1 if run % 2 else -1]:
            server = start_gateway(max_nodes=1000, options=options)
            try:
                result = fanout(server, duration, warmup, window=window)
            finally:
                server.stop()
            # Deliveries per second of the server's CPU time: what history
            # costs, even when other processes take the CPU from the server.
            result["deliveries/CPU-s"] = result["deliveries/s"] / max(result["server CPU"], 1e-9)
            figures.setdefault(("fanout", label), []).append(result)
            print(_line(f"fanout {label}", figures["fanout", label][-1]), flush=True)
            server = start_gateway(max_nodes=1100, options=options)
            try:
                figures.setdefault(("rate", label), []).append(rate(server, duration))
            finally:
                server.stop()
            print(_line(f"rate {label}", figures["rate", label][-1]), flush=True)
    print(" median")
    for key in sorted(figures):
        print(_line(" ".join(key), _median(figures[key])))
    for key in ("deliveries/s", "deliveries/CPU-s"):
        pairs = zip(figures["fanout", "history on"], figures["fanout", "history off"])
        ratios = [on[key] / off[key] for on, off in pairs]
        print(f"  fanout {key} on/off per run: {', '.join(f'{r:.3f}' for r in ratios)}; "
              f"median {statistics.median(ratios):.3f} (target >= 0.90)")
    for key in ("p50 ms", "p99 ms"):
        off = _median(figures["rate", "history off"])[key]
        on = _median(figures["rate", "history on"])[key]
        print(f"  rate {key} off {off:.2f}, on {on:.2f}")


def _exit_on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Wingman Gateway load generator (see benchmarks/README.rst)")
    parser.add_argument("scenario", nargs="?", default="all",
                        choices=["fanout", "rate", "memory", "storm", "bigroom", "presence", "history", "all"])
    parser.add_argument("--runs", type=int, default=3, help="runs per scenario; the median is printed too")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds (fanout, rate)")
    parser.add_argument("--warmup", type=float, default=2.0, help="fan-out warm-up seconds")
    parser.add_argument("--window", type=int, default=8, help="fan-out messages in flight per sender")
    parser.add_argument("--headroom", type=int, default=64, metavar="WINDOW",
                        help="after the fan-out runs, one baseline run with this window (0: skip)")
    parser.add_argument("--py-spy", metavar="PATH", help="py-spy binary: profile the gateway in fanout run 1")
    parser.add_argument("--metrics", action="store_true",
                        help="fanout: also run the gateway with its metrics on (--metrics-listen) each run")
    args = parser.parse_args(argv)
    if not (0 < args.duration <= 120 and 0 <= args.warmup <= 30 and 1 <= args.runs <= 20
            and 1 <= args.window <= 1000 and 0 <= args.headroom <= 1000):
        parser.error("bounds: 0 < --duration <= 120, 0 <= --warmup <= 30, 1 <= --runs <= 20, "
                     "1 <= --window <= 1000, 0 <= --headroom <= 1000")
    # SIGTERM/SIGHUP unwind through the ``finally`` blocks that stop the servers.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit_on_signal)
    raise_nofile()
    pinned = pin(GENERATOR_CPU)
    began = time.monotonic()
    for line in environment():
        print(line)
    print(calibrate())
    if not pinned:
        print(f"warning: could not pin the generator to core {GENERATOR_CPU}")
    if args.scenario in ("fanout", "all"):
        run_fanout(args.runs, args.duration, args.warmup, args.window, args.headroom, args.py_spy,
                   args.metrics)
    if args.scenario in ("rate", "all"):
        run_rate(args.runs, args.duration)
    if args.scenario in ("memory", "all"):
        run_memory(args.runs)
    if args.scenario in ("storm", "all"):
        run_storm(args.runs)
    if args.scenario in ("bigroom", "all"):
        run_bigroom(args.runs, args.duration, args.warmup, args.window)
    if args.scenario in ("presence", "all"):
        run_presence(args.runs)
    if args.scenario == "history":
        run_history(args.runs, args.duration, args.warmup, args.window)
    print(f"\ntotal time {time.monotonic() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
