"""Server processes under test, CPU pinning, and readings from /proc.

The server and the load generator each get a core of their own, so that
the figures measure the server, not the two fighting over one core.
"""

from __future__ import annotations

import http.client
import json
import os
import platform
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from wingman_gateway import portsfile

HERE = Path(__file__).resolve().parent
TWISTD = str(Path(sys.executable).with_name("twistd"))
SERVER_CPU = 0
GENERATOR_CPU = 1
_LISTENING = re.compile(  # the yardstick servers (autobahn, baseline) print this
    r"listening on .*?\(?([\d.]+):(\d+)\)?\s*$")
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def raise_nofile() -> int:
    """Raise this process's open-file limit to its hard limit; returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def pin(cpu: int) -> bool:
    """Pin the calling process to ``cpu`` if the machine has it."""
    try:
        os.sched_setaffinity(0, {cpu})
        return True
    except OSError:
        return False


def _preexec(cpu: int) -> Any:
    def preexec() -> None:
        """Runs in the child before exec: its core, the full file limit."""
        pin(cpu)
        raise_nofile()

    return preexec


class Server:
    """A server process this generator started; stopped by its own pid only.

    A gateway (``twistd … wingman-gateway …``) is given a ``--ports-file`` and
    its port is read from there; the yardstick servers print theirs."""

    def __init__(self, label: str, argv: list[str], timeout: float = 20.0, cpu: int = SERVER_CPU) -> None:
        self.label = label
        self.log_file = tempfile.NamedTemporaryFile(
            prefix=f"bench-{label}-", suffix=".log", delete=False
        )
        self.ports_file: str | None = None
        if "wingman-gateway" in argv:
            self.ports_file = self.log_file.name + ".ports.json"
            argv = [*argv, "--ports-file", self.ports_file]
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=_preexec(cpu),
            cwd=str(HERE.parent),
        )
        self.pid = self.proc.pid
        self.port = self._wait_port(timeout)

    def _wait_port(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            port = self._bound_port()
            if port is not None:
                return port
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        tail = self.log_tail()
        self.stop()
        raise RuntimeError(f"{self.label} did not start; log:\n{tail}")

    def _bound_port(self) -> int | None:
        """The first TCP port of the ports file (a gateway), or of the ``listening on`` line."""
        if self.ports_file is not None:
            bound = portsfile.read(self.ports_file)
            ports = [entry["port"] for entry in (bound or {}).get("listeners", []) if "port" in entry]
            return int(ports[0]) if ports else None
        for line in Path(self.log_file.name).read_text(errors="replace").splitlines():
            match = _LISTENING.search(line)
            if match:
                return int(match.group(2))
        return None

    def log_tail(self, lines: int = 30) -> str:
        text = Path(self.log_file.name).read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def cpu_seconds(self) -> float:
        """utime + stime of the server, from /proc/PID/stat."""
        with open(f"/proc/{self.pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK

    def rss_kb(self) -> int:
        """VmRSS of the server, in KiB."""
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def peak_rss_kb(self) -> int:
        """VmHWM (the peak RSS) of the server, in KiB, since start or ``reset_peak``."""
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmHWM")

    def reset_peak(self) -> None:
        """Start VmHWM again from the current RSS (Linux: ``5`` to clear_refs; needs ptrace rights)."""
        with open(f"/proc/{self.pid}/clear_refs", "w") as refs:
            refs.write("5")

    def health(self) -> dict[str, Any]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request("GET", "/health")
            return json.loads(connection.getresponse().read())
        finally:
            connection.close()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM by pid, SIGKILL if it lingers; the log file is removed."""
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(timeout)
        self.log_file.close()
        for path in (self.log_file.name, self.ports_file):
            try:
                if path is not None:
                    os.unlink(path)
            except OSError:
                pass


def start_gateway(max_nodes: int = 1000, options: tuple[str, ...] = (), cpu: int = SERVER_CPU,
                  label: str = "gateway") -> Server:
    """The gateway with ``options`` added (e.g. ``--history-size 0``), on core ``cpu``."""
    return Server(
        label if label != "gateway" or "--metrics-listen" not in options else "gateway+metrics",
        [
            TWISTD, "--nodaemon", "--pidfile=", "wingman-gateway",
            "--listen", "tcp:0:interface=127.0.0.1", "--rate-limit", "0",
            "--max-nodes", str(max_nodes), *options,
        ],
        cpu=cpu,
    )


def start_autobahn(backlog: int = 50) -> Server:
    """The bare Autobahn server (``autobahn_server.py``): the connection set-up yardstick."""
    return Server("autobahn", [sys.executable, str(HERE / "autobahn_server.py"), "--port", "0",
                               "--backlog", str(backlog)])


def start_baseline() -> Server:
    return Server("baseline", [sys.executable, str(HERE / "baseline_server.py"), "--port", "0"])


def _schedstat(pid: int | str) -> tuple[float, float]:
    """(seconds on CPU, seconds runnable but waiting for a CPU) of a process's main thread."""
    with open(f"/proc/{pid}/schedstat") as stat:
        running, waiting, _ = stat.read().split()
    return int(running) / 1e9, int(waiting) / 1e9


def _busy_seconds() -> float:
    """CPU seconds all cores spent not idle, from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / _CLK_TCK


class CpuMeter:
    """CPU use between ``start`` and ``stop``: this process, the server, everything else.

    Also how long each of the two waited, runnable, for a CPU (schedstat):
    on a shared machine, the one sign that a figure was cut by others' load.
    """

    def __init__(self, server: Server) -> None:
        self.server = server
        self.wall = self.own = self.theirs = self.others = self.own_wait = self.their_wait = 0.0

    @staticmethod
    def _own() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    def _sample(self) -> tuple[float, ...]:
        return (
            time.perf_counter(),
            self._own(),
            self.server.cpu_seconds(),
            _schedstat("self")[1],
            _schedstat(self.server.pid)[1],
            _busy_seconds(),
        )

    def start(self) -> None:
        self._first = self._sample()

    def stop(self) -> None:
        last = self._sample()
        delta = [b - a for a, b in zip(self._first, last)]
        self.wall = delta[0]
        self.own, self.theirs, self.own_wait, self.their_wait, busy = (d / self.wall for d in delta[1:])
        self.others = max(0.0, busy - self.own - self.theirs)

    def figures(self) -> dict[str, float]:
        return {
            "gen CPU": self.own,
            "server CPU": self.theirs,
            "gen waited": self.own_wait,
            "server waited": self.their_wait,
            "others CPU": self.others,
        }


class Quiet:
    """Waits for other processes on this shared machine to go quiet before a measurement.

    The wait is bounded by a budget for the whole invocation, so a busy
    machine slows the benchmark down by at most ``budget`` seconds; a run
    measured while others were busy shows it in its ``others CPU`` figure.
    """

    def __init__(self, budget: float = 90.0, threshold: float = 0.3, step: float = 0.5) -> None:
        self.budget = budget
        self.threshold = threshold
        self.step = step

    def wait(self, pause: Callable[[float], None] = time.sleep) -> None:
        """``pause`` passes the time between samples: connections already open
        pass it answering their heartbeats (``Pool.service``), or the gateway
        drops them after ``--ping-timeout`` of silence."""
        waited = 0.0
        while True:
            began, busy = time.perf_counter(), _busy_seconds()
            pause(self.step)
            load = (_busy_seconds() - busy) / (time.perf_counter() - began)
            if load <= self.threshold or self.budget <= 0:
                break
            self.budget -= self.step
            waited += self.step
        if waited:
            state = "quiet" if load <= self.threshold else "still busy, budget spent"
            print(f"  (waited {waited:.1f} s for other processes: {load * 100:.0f}% of a core, {state})",
                  flush=True)


quiet = Quiet()


def calibrate(rounds: int = 2000, limit: float = 5.0) -> str:
    """Round trip of one byte over loopback TCP between the two pinned cores.

    The floor under every latency figure here: on a virtual machine whose
    idle cores sleep, waking the other core can take milliseconds.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    child = os.fork()
    if child == 0:  # the echo side, on the server's core
        try:
            pin(SERVER_CPU)
            peer, _ = listener.accept()
            peer.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            peer.settimeout(limit + 5)
            while data := peer.recv(64):
                peer.sendall(data)
        finally:
            os._exit(0)
    times: list[int] = []
    try:
        client = socket.create_connection(listener.getsockname(), timeout=limit + 5)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        deadline = time.monotonic() + limit
        for _ in range(rounds):
            began = time.perf_counter_ns()
            client.sendall(b"x")
            client.recv(64)
            times.append(time.perf_counter_ns() - began)
            if time.monotonic() > deadline:
                break
        client.close()
    finally:
        listener.close()
        os.waitpid(child, 0)
    times.sort()
    pick = lambda f: times[min(len(times) - 1, int(f * len(times)))] / 1e3  # noqa: E731
    return (
        f"loopback TCP round trip core {GENERATOR_CPU} -> {SERVER_CPU} -> {GENERATOR_CPU} "
        f"({len(times)} trips): p50 {pick(0.5):.0f} us, p99 {pick(0.99):.0f} us, max {times[-1] / 1e3:.0f} us"
    )


def environment() -> list[str]:
    """Lines describing the machine and software, printed before the figures."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    try:
        revision = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=HERE.parent, capture_output=True, text=True, timeout=10
        ).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        revision = "unknown"
    return [
        f"checkout: {revision}",
        f"cpu: {model}, {os.cpu_count()} cores; server on core {SERVER_CPU}, generator on core {GENERATOR_CPU}",
        f"kernel: {platform.system()} {platform.release()}",
        f"python: {platform.python_implementation()} {platform.python_version()}",
        f"twisted {version('Twisted')}, autobahn {version('autobahn')}, "
        f"wingman-gateway {version('wingman-gateway')}",
        f"open files limit: {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}",
    ]
