"""Soak: the gateway under attack while honest nodes talk.

Honest WebSocket nodes (from 127.0.0.1) echo messages to each other in
pairs and measure round trips; meanwhile attackers (from 127.0.0.2 and
up, so the per-source caps apply to them) run one attack per phase:

- ``depth``: messages of 65 opening brackets and an unterminated run of
  escaped quotes (24 KB), the worst case of a backtracking depth check;
- ``metadata``: registrations carrying 1 MiB of ``[{},{},...]`` metadata;
- ``pongs``: three sockets sending WebSocket PINGs and never reading;
- ``slots``: bridge registrations as fast as answered, to fill the nodes;
- ``trickle``: 200 sockets sending one header line every 2 s;
- ``pipeline``: 13 MB of pipelined ``GET /health``, never read;
- ``presence``: 400 nodes joining one room.

Printed per phase: the honest nodes' round trip p50/p99 (ms), lost echoes,
and the gateway's RSS (peak, MiB); then the RSS timeline. With ``--runs N``
the gateway is restarted per run and the medians are printed, with each
phase's p99 as a ratio of the same run's quiet baseline phase.

    .venv/bin/python benchmarks/soak.py [--runs 3] [--phase 8] [--pairs 2]

Everything stays on loopback; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing
import os
import socket
import statistics
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from websockets.sync.client import ClientConnection, connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from procs import TWISTD, Server, environment, raise_nofile  # noqa: E402

ATTACKS = ("depth", "metadata", "pongs", "slots", "trickle", "pipeline", "presence")
ECHO_TIMEOUT = 2.0


# -- sockets ------------------------------------------------------------------


def tcp(port: int, source: str, timeout: float = 5.0, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(timeout)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def websocket(port: int, source: str) -> ClientConnection:
    """A client WebSocket from ``source``; no client-side keepalive (the gateway has its own)."""
    return connect(f"ws://127.0.0.1:{port}/ws", sock=tcp(port, source), open_timeout=10,
                   max_size=None, ping_interval=None, close_timeout=0.5)


def drop(thing: Any) -> None:
    """Close an attacker's socket or WebSocket at once (no closing handshake)."""
    sock = getattr(thing, "socket", thing)
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def raw_upgrade(port: int, source: str) -> socket.socket:
    """A WebSocket opened by hand with a tiny receive buffer (it will not read)."""
    sock = tcp(port, source, rcvbuf=4096)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while not head.endswith(b"\r\n\r\n") and len(head) < 4096:
        byte = sock.recv(1)
        if not byte:
            raise OSError("closed during upgrade")
        head += byte
    if not head.startswith(b"HTTP/1.1 101"):
        raise OSError("upgrade refused")
    return sock


def ping_frames(count: int) -> bytes:
    mask = os.urandom(4)
    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(b"p" * 125))
    return (struct.pack("!BB", 0x89, 0x80 | 125) + mask + payload) * count


# -- honest nodes ---------------------------------------------------------------


class Pair:
    """Two honest nodes in a room of their own: one sends, the other echoes back."""

    def __init__(self, port: int, index: int, stop: threading.Event) -> None:
        self.port = port
        self.index = index
        self.room = f"honest-{index}"
        self.reconnects = 0
        self.sender, self.echo = self._connect()
        self.stop = stop
        self.samples: list[tuple[float, float | None]] = []  # (when, rtt ms or None if lost)
        self.threads = [threading.Thread(target=self._echo_loop, daemon=True),
                        threading.Thread(target=self._send_loop, daemon=True)]

    def _connect(self) -> tuple[ClientConnection, ClientConnection]:
        pair = (websocket(self.port, "127.0.0.1"), websocket(self.port, "127.0.0.1"))
        for conn, name in zip(pair, (f"sender{self.index}", f"echo{self.index}")):
            self._request(conn, {"type": "register", "messageId": "r", "payload": {"name": name}})
            self._request(conn, {"type": "join_group", "messageId": "j",
                                 "payload": {"groupName": self.room, "createIfNotExists": True}})
        return pair

    def _reconnect(self) -> None:
        """The gateway dropped us (e.g. heartbeat timeout after a freeze): join again."""
        for conn in (self.sender, self.echo):
            drop(conn)
        try:
            self.sender, self.echo = self._connect()
            self.reconnects += 1
        except Exception:  # noqa: BLE001 - try again on the next message
            time.sleep(0.2)

    @staticmethod
    def _request(conn: ClientConnection, envelope: dict[str, Any]) -> None:
        conn.send(json.dumps(envelope))
        for _ in range(100):
            reply = json.loads(conn.recv(10))
            if reply.get("messageId") == envelope["messageId"]:
                assert reply["type"] == "ack", reply
                return
        raise RuntimeError("no ack")

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def _echo_loop(self) -> None:
        while not self.stop.is_set():
            echo = self.echo
            try:
                message = json.loads(echo.recv(0.5))
                if message["type"] == "ping":
                    echo.send('{"type":"pong"}')
                elif message["type"] == "broadcast" and "t" in message["payload"]:
                    echo.send(json.dumps({"type": "broadcast", "payload": {
                        "groupId": self.room, "message": {"echo": message["payload"]["t"]}}}))
            except TimeoutError:
                continue
            except Exception as error:  # noqa: BLE001 - gone: the sender reconnects both
                if os.environ.get("SOAK_DEBUG"):
                    print("  echo:", type(error).__name__, error)
                time.sleep(0.1)

    def _send_loop(self) -> None:
        for n in range(1_000_000):
            if self.stop.is_set():
                return
            sent = time.perf_counter_ns()
            try:
                self.sender.send(json.dumps({"type": "broadcast", "payload": {
                    "groupId": self.room, "message": {"t": sent, "n": n}}}))
                rtt = self._await_echo(sent)
            except Exception as error:  # noqa: BLE001 - the connection is gone
                if os.environ.get("SOAK_DEBUG"):
                    print("  sender:", type(error).__name__, error)
                rtt = None
                self._reconnect()
            self.samples.append((time.monotonic(), rtt))
            time.sleep(0.05)

    def _await_echo(self, sent: int) -> float | None:
        deadline = time.monotonic() + ECHO_TIMEOUT
        while time.monotonic() < deadline:
            try:
                message = json.loads(self.sender.recv(max(deadline - time.monotonic(), 0.01)))
            except TimeoutError:
                return None
            if message["type"] == "ping":
                self.sender.send('{"type":"pong"}')
            elif message["type"] == "broadcast" and message["payload"].get("echo") == sent:
                return (time.perf_counter_ns() - sent) / 1e6
        return None

    def close(self) -> None:
        for thread in self.threads:
            thread.join(5)
        for conn in (self.sender, self.echo):
            drop(conn)


# -- attacks --------------------------------------------------------------------
# Each runs until ``stop`` is set (bounded in count too) and closes what it opened.


def attack_depth(port: int, stop: Any, opened: list[Any]) -> None:
    conn = websocket(port, "127.0.0.2")
    opened.append(conn)
    message = "[" * 65 + '"' + '\\"' * 12000
    for _ in range(200):
        if stop.is_set():
            return
        conn.send(message)
        conn.recv(60)  # one at a time: the next only after the gateway answered this one


def attack_metadata(port: int, stop: Any, opened: list[Any]) -> None:
    metadata = "[" + ",".join(["{}"] * 340_000) + "]"
    for index in range(40):
        if stop.is_set():
            return
        conn = websocket(port, f"127.0.0.{3 + index // 30}")
        opened.append(conn)
        conn.send('{"type":"register","payload":{"name":"meta%d","metadata":{"blob":%s}}}' % (index, metadata))
        try:
            conn.recv(5)
        except Exception:  # noqa: BLE001 - refused and closed is the fixed outcome
            pass


def attack_pongs(port: int, stop: Any, opened: list[Any]) -> None:
    socks = [raw_upgrade(port, "127.0.0.4") for _ in range(3)]
    opened.extend(socks)
    frames = ping_frames(64)
    for sock in socks:
        sock.settimeout(0.05)
    for _ in range(100_000):
        if stop.is_set() or not socks:
            return
        for sock in list(socks):
            try:
                sock.send(frames)
            except (socket.timeout, BlockingIOError):
                pass
            except OSError:
                socks.remove(sock)


def attack_slots(port: int, stop: Any, opened: list[Any]) -> None:
    body = b'{"type":"register","payload":{"name":"slot"}}'
    request = (b"POST /bridge/send HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
    for _ in range(2000):
        if stop.is_set():
            return
        try:
            with tcp(port, "127.0.0.5") as sock:
                sock.sendall(request)
                sock.recv(4096)
        except OSError:
            time.sleep(0.01)


def attack_trickle(port: int, stop: Any, opened: list[Any]) -> None:
    socks = []
    for index in range(200):
        try:
            sock = tcp(port, f"127.0.0.{6 + index // 60}")
            sock.sendall(b"GET /health HTTP/1.1\r\n")
            socks.append(sock)
        except OSError:
            pass
    opened.extend(socks)
    for _ in range(1000):
        if stop.wait(2.0):
            return
        for sock in socks:
            try:
                sock.sendall(b"X-Trickle: 1\r\n")
            except OSError:
                pass


def attack_pipeline(port: int, stop: Any, opened: list[Any]) -> None:
    sock = tcp(port, "127.0.0.10", rcvbuf=4096)
    opened.append(sock)
    batch = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" * 2048
    sock.settimeout(0.2)
    sent = 0
    while sent < 13 * 1024 * 1024 and not stop.is_set():
        try:
            sent += sock.send(batch)
        except (socket.timeout, BlockingIOError):
            continue
        except OSError:
            return


def attack_presence(port: int, stop: Any, opened: list[Any]) -> None:
    for index in range(400):
        if stop.is_set():
            return
        try:
            conn = websocket(port, f"127.0.0.{20 + index // 30}")
        except Exception:  # noqa: BLE001 - refused at a cap
            continue
        opened.append(conn)
        conn.send(json.dumps({"type": "register", "payload": {"name": f"storm{index}"}}))
        conn.send(json.dumps({"type": "join_group", "payload": {"groupName": "storm", "createIfNotExists": True}}))


ATTACK: dict[str, Callable[[int, Any, list[Any]], None]] = {
    name: globals()[f"attack_{name}"] for name in ATTACKS
}


# -- one run --------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    server = Server("soak", [TWISTD, "--nodaemon", "--pidfile=", "wingman-gateway",
                             "--listen", "tcp:0:interface=127.0.0.1", "--exempt-source", "127.0.0.1/32",
                             *args.gateway_args])
    stop_all = threading.Event()
    pairs: list[Pair] = []
    rss: list[tuple[float, str, int]] = []
    phases: list[tuple[str, float, float]] = []
    try:
        pairs = [Pair(server.port, index, stop_all) for index in range(args.pairs)]
        for pair in pairs:
            pair.start()
        started = time.monotonic()
        for name in ("quiet", *args.attacks, "after"):
            # The attacker is a process of its own, so it does not slow the honest
            # nodes' threads down (one interpreter lock) and skew their figures.
            stop = multiprocessing.Event()
            attacker = None
            if name in ATTACK:
                attacker = multiprocessing.Process(target=_attacker, args=(name, server.port, stop), daemon=True)
                attacker.start()
            begin = time.monotonic()
            while time.monotonic() - begin < args.phase:
                if not server.alive():
                    raise RuntimeError("gateway died:\n" + server.log_tail())
                rss.append((time.monotonic() - started, name, server.rss_kb()))
                time.sleep(0.5)
            stop.set()
            if attacker is not None:
                attacker.join(20)
                if attacker.is_alive():  # our own child, by its pid
                    attacker.kill()
                    attacker.join(5)
            phases.append((name, begin, time.monotonic()))
            time.sleep(1.0)  # let closes land before the next phase
    finally:
        stop_all.set()
        for pair in pairs:
            pair.close()
        server.stop()
    figures: dict[str, dict[str, float]] = {}
    samples = [sample for pair in pairs for sample in pair.samples]
    for name, begin, end in phases:
        rtts = [rtt for when, rtt in samples if begin <= when < end and rtt is not None]
        lost = sum(1 for when, rtt in samples if begin <= when < end and rtt is None)
        peak = max((kb for _, phase, kb in rss if phase == name), default=0)
        figures[name] = {"p50": percentile(rtts, 0.5), "p99": percentile(rtts, 0.99),
                         "echoes": len(rtts), "lost": lost, "rss": peak / 1024}
    figures["quiet"]["reconnects"] = sum(pair.reconnects for pair in pairs)
    if args.timeline:
        print("  RSS timeline (s, phase, MiB): " + ", ".join(
            f"{t:.0f} {phase} {kb / 1024:.0f}" for t, phase, kb in rss[::4]))
    return figures


def _attacker(name: str, port: int, stop: Any) -> None:
    """One attack, in a child process: runs until ``stop``, then closes what it opened."""
    opened: list[Any] = []
    try:
        ATTACK[name](port, stop, opened)
        stop.wait(120)
    except Exception as error:  # noqa: BLE001 - an attack refused outright is an outcome
        print(f"  ({name}: {type(error).__name__}: {error})")
    finally:
        for thing in opened:
            drop(thing)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--phase", type=float, default=8.0, help="seconds per phase")
    parser.add_argument("--pairs", type=int, default=2, help="honest sender/echo pairs")
    parser.add_argument("--attacks", default=",".join(ATTACKS), help="comma list of " + ",".join(ATTACKS))
    parser.add_argument("--timeline", action="store_true", help="print the RSS timeline of each run")
    parser.add_argument("gateway_args", nargs="*", help="more gateway options (after --)")
    args = parser.parse_args()
    args.attacks = [a for a in args.attacks.split(",") if a]
    unknown = set(args.attacks) - set(ATTACKS)
    if unknown:
        parser.error(f"unknown attacks: {', '.join(sorted(unknown))}")
    raise_nofile()
    for line in environment():
        print(line)
    runs = []
    for number in range(1, args.runs + 1):
        figures = run(args)
        runs.append(figures)
        print(f"run {number}:")
        for name, f in figures.items():
            print(f"  {name:9} p50 {f['p50']:7.2f} ms  p99 {f['p99']:8.2f} ms  echoes {f['echoes']:4.0f}"
                  f"  lost {f['lost']:3.0f}  RSS peak {f['rss']:6.1f} MiB")
    print(f"medians of {len(runs)} runs (p99 ratio: against the same run's quiet phase;"
          " a phase without echoes counts as infinitely slow):")
    for name in runs[0]:
        med = {key: statistics.median(_slow(r[name][key]) for r in runs) for key in ("p50", "p99", "lost", "rss")}
        ratio = statistics.median(_slow(r[name]["p99"]) / r["quiet"]["p99"] for r in runs)
        print(f"  {name:9} p50 {med['p50']:7.2f} ms  p99 {med['p99']:8.2f} ms  (x{ratio:5.2f})"
              f"  lost {med['lost']:3.0f}  RSS peak {med['rss']:6.1f} MiB")


def _slow(value: float) -> float:
    return float("inf") if value != value else value  # NaN: no echo came back


if __name__ == "__main__":
    main()
