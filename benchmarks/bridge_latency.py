"""Latency of broadcasts from a WebSocket node to HTTP bridge nodes.

Usage: python benchmarks/bridge_latency.py [--runs 3] [--messages 400] [--rate 50]

One room, three nodes: a WebSocket sender, a long-polling receiver and an
event-stream (SSE) receiver. The sender broadcasts ``--messages`` messages
paced at ``--rate`` per second, each carrying its send time; each receiver
notes when it has it. Prints p50/p99/max per receiver for each run (a fresh
gateway per run) and the median of the runs. Loopback only; bounded in
count and time. See benchmarks/README.rst.
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import socket
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from procs import GENERATOR_CPU, Server, calibrate, environment, pin, quiet, start_gateway  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

ROOM = "latency"
SETTLE = 5.0  # seconds to wait for the last messages after sending
POLL_TIMEOUT = 25


def _post(port: int, envelope: dict[str, Any], secret: str | None = None) -> dict[str, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Content-Type": "application/json"}
        if secret:
            headers["X-Wingman-Session"] = secret
        connection.request("POST", "/bridge/send", json.dumps(envelope), headers)
        return json.loads(connection.getresponse().read())  # type: ignore[no-any-return]
    finally:
        connection.close()


def bridge_member(port: int, name: str) -> str:
    """Register a bridge node and join the room; its session secret."""
    ack = _post(port, {"type": "register", "messageId": 1, "payload": {"name": name}})
    secret = ack["session"]
    joined = _post(port, {"type": "join_group", "messageId": 2,
                          "payload": {"groupName": ROOM, "createIfNotExists": True}}, secret)
    assert joined["type"] == "ack", joined
    return str(secret)


class Receiver(threading.Thread):
    """Reads one bridge node's messages and notes each broadcast's latency."""

    def __init__(self, port: int, secret: str, kind: str, deadline: float) -> None:
        super().__init__(daemon=True)
        self.port, self.secret, self.kind, self.deadline = port, secret, kind, deadline
        self.latencies: dict[int, float] = {}  # message number -> ms
        self.duplicates = 0
        self.failure: str | None = None
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.connection: http.client.HTTPConnection | None = None

    def finish(self) -> None:
        """Stop reading; a stream blocked in a read is woken by shutting its socket."""
        self.stop.set()
        sock = self.connection.sock if self.connection is not None else None
        if self.kind == "sse" and sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def note(self, envelope: dict[str, Any]) -> None:
        now = time.time_ns()
        if envelope.get("type") != "broadcast":
            return
        payload = envelope["payload"]
        if payload["n"] in self.latencies:
            self.duplicates += 1
        self.latencies[payload["n"]] = (now - payload["t"]) / 1e6

    def run(self) -> None:
        try:
            self.stream() if self.kind == "sse" else self.poll()
        except Exception as error:  # reported with the figures
            if not self.stop.is_set():
                self.failure = f"{type(error).__name__}: {error}"
        finally:
            self.ready.set()

    def poll(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=POLL_TIMEOUT + 10)
        headers = {"X-Wingman-Session": self.secret}
        after = 0
        self.ready.set()
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            connection.request("GET", f"/bridge/poll?after={after}&timeout=1", headers=headers)
            body = json.loads(connection.getresponse().read())
            for item in body["messages"]:
                after = item["seq"]
                self.note(item["envelope"])
        connection.close()

    def stream(self) -> None:
        # The gateway's heartbeat comments (15 s) come well within this timeout.
        connection = self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        connection.request("GET", "/bridge/sse", headers={"X-Wingman-Session": self.secret})
        response = connection.getresponse()
        confirm = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        self.ready.set()
        data: list[str] = []
        last = 0
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            raw = response.readline()
            if not raw:
                break
            line = raw.decode().rstrip("\n")
            if line.startswith("id: "):
                last = int(line[4:])
            elif line.startswith("data: "):
                data.append(line[6:])
            elif not line and data:
                self.note(json.loads("\n".join(data)))
                data = []
                if last % 50 == 0:  # confirm now and then, as a client would
                    confirm.request("POST", f"/bridge/ack?after={last}", headers={"X-Wingman-Session": self.secret})
                    confirm.getresponse().read()
        connection.close()
        confirm.close()


def send_paced(sender: Any, messages: int, rate: float) -> None:
    """Join, then broadcast ``messages`` at ``rate``, each with its send time."""
    sender.send(json.dumps({"type": "register", "payload": {"name": "sender"}}))
    sender.send(json.dumps({"type": "join_group", "payload": {"groupName": ROOM}}))
    time.sleep(0.5)
    interval = 1.0 / rate
    began = time.monotonic()
    for n in range(messages):
        pause = began + n * interval - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        body = {"t": time.time_ns(), "n": n}
        sender.send(json.dumps({"type": "broadcast", "payload": {"groupId": ROOM, "message": body}}))


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def one_run(server: Server, messages: int, rate: float) -> dict[str, dict[str, float]]:
    port = server.port
    quiet.wait()  # before anything starts: the receivers' deadline runs from here
    budget = messages / rate + SETTLE + 10
    deadline = time.monotonic() + budget
    receivers = [
        Receiver(port, bridge_member(port, "poller"), "poll", deadline),
        Receiver(port, bridge_member(port, "streamer"), "sse", deadline),
    ]
    for receiver in receivers:
        receiver.start()
        receiver.ready.wait(10)
    try:
        with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=10) as sender:
            send_paced(sender, messages, rate)
            settle = time.monotonic() + SETTLE
            while time.monotonic() < settle and any(len(r.latencies) < messages for r in receivers):
                time.sleep(0.05)
    finally:
        for receiver in receivers:
            receiver.finish()
        for receiver in receivers:
            receiver.join(POLL_TIMEOUT + 15)
    figures = {}
    for receiver in receivers:
        values = list(receiver.latencies.values())
        figures[receiver.kind] = {
            "p50 ms": percentile(values, 0.50),
            "p99 ms": percentile(values, 0.99),
            "max ms": max(values) if values else float("nan"),
            "lost": float(messages - len(values)),
            "dup": float(receiver.duplicates),
        }
        if receiver.failure:
            print(f"  {receiver.kind} receiver failed: {receiver.failure}")
    return figures


def _line(label: str, figures: dict[str, float]) -> str:
    parts = [f"{key} {value:.2f}" if "ms" in key else f"{key} {value:.0f}" for key, value in figures.items()]
    return f"  {label:<14}" + "  ".join(parts)


def _exit_on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Broadcast latency to HTTP bridge nodes (long poll, SSE)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--messages", type=int, default=400, help="broadcasts per run")
    parser.add_argument("--rate", type=float, default=50.0, help="broadcasts per second")
    args = parser.parse_args(argv)
    if not (1 <= args.runs <= 20 and 1 <= args.messages <= 10000 and 1 <= args.rate <= 1000
            and args.messages / args.rate <= 120):
        parser.error("bounds: 1 <= --runs <= 20, 1 <= --messages <= 10000, 1 <= --rate <= 1000, "
                     "--messages / --rate <= 120 s")
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit_on_signal)
    pin(GENERATOR_CPU)
    for line in environment():
        print(line)
    print(calibrate())
    print(f"\n== bridge latency: WebSocket sender -> long-poll and SSE receivers, "
          f"{args.messages} broadcasts at {args.rate:g}/s ==")
    print("  from the send time in the message to when the receiver has parsed it (same clock)")
    results: dict[str, list[dict[str, float]]] = {"poll": [], "sse": []}
    for run in range(1, args.runs + 1):
        server = start_gateway()
        try:
            figures = one_run(server, args.messages, args.rate)
        finally:
            server.stop()
        for kind in results:
            results[kind].append(figures[kind])
            print(_line(f"run {run} {kind}", figures[kind]), flush=True)
    print(" median")
    for kind, runs in results.items():
        print(_line(kind, {key: statistics.median(run[key] for run in runs) for key in runs[0]}))
    print("  target: p99 < 2000 ms (the issue's bound; expect far less)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
