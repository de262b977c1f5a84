"""The three measured scenarios: fan-out throughput, paced latency, idle memory.

Each takes a server process that the caller started and stops, drives it
through raw WebSocket connections (``wsclient``) and returns its figures.
"""

from __future__ import annotations

import math
import socket
import struct
import time
from typing import Any, Callable

from procs import CpuMeter, Server, quiet, start_gateway
from wsclient import RECV_SIZE, Conn, Pool, count_frames, decode_frames, send_all

ROOM = "bench"
# Linux's SO_TIMESTAMPNS (= SCM_TIMESTAMPNS); the socket module does not export it.
SO_TIMESTAMPNS = SCM_TIMESTAMPNS = 35
Figures = dict[str, Any]
_MESSAGE = b'{"type":"broadcast","payload":{"groupId":"%s","message":{"t":%d,"s":%d,"n":%d}}}'


def _join(conn: Conn) -> dict[str, Any]:
    return {"type": "join_group", "payload": {"groupName": ROOM, "createIfNotExists": True}}


def _form_room(pool: Pool, members: list[Conn]) -> str:
    """Join ``members`` in order: the first creates the room, the last joins last.

    The gateway fans out in join order, so the last member (the probe in
    the fan-out scenario) is served last for every message.
    """
    group_id = pool.request(members[:1], _join)[0]["payload"]["groupId"]
    if len(members) > 2:
        pool.request(members[1:-1], _join)
    if len(members) > 1:
        pool.request(members[-1:], _join)
    pool.service(0.3)  # let the presence notices drain
    return group_id


def _percentile(sorted_ns: list[int], fraction: float) -> float:
    """Nearest-rank percentile, in milliseconds."""
    if not sorted_ns:
        return float("nan")
    rank = min(len(sorted_ns) - 1, max(0, math.ceil(fraction * len(sorted_ns)) - 1))
    return sorted_ns[rank] / 1e6


class Receivers:
    """The receive side of a set of connections: one shared buffer, leftovers per connection."""

    def __init__(self, conns: list[Conn]) -> None:
        self.conns = conns
        self.slot = {conn.fd: i for i, conn in enumerate(conns)}
        self.socks = [conn.sock for conn in conns]
        self.left = [conn.inbuf for conn in conns]
        self.buf = bytearray(2 * RECV_SIZE)
        self.view = memoryview(self.buf)
        self.others: list[bytes] = []

    def _prefill(self, i: int) -> int:
        """Put connection ``i``'s incomplete frame at the start of the shared buffer."""
        left = self.left[i]
        size = len(left)
        if size:
            if size > RECV_SIZE:
                raise RuntimeError(f"frame over {RECV_SIZE} bytes")
            self.buf[:size] = left
        return size

    def _closed(self, i: int) -> ConnectionError:
        conn = self.conns[i]
        return ConnectionError(f"{conn.name} closed by the server: {conn.closed or 'no close frame'}")

    def read(self, i: int) -> int:
        """recv into the shared buffer after connection ``i``'s leftover; returns the end."""
        size = self._prefill(i)
        try:
            got = self.socks[i].recv_into(self.view[size : size + RECV_SIZE])
        except BlockingIOError:
            return size
        if not got:
            raise self._closed(i)
        return size + got

    def read_stamped(self, i: int) -> tuple[int, int]:
        """``read``, plus the kernel's arrival time (CLOCK_REALTIME ns) of the last segment read.

        With one message per read (the paced scenario), the arrival stamp
        excludes the time the message waited for this process to get to it.
        """
        size = self._prefill(i)
        try:
            got, ancillary, _, _ = self.socks[i].recvmsg_into([self.view[size : size + RECV_SIZE]], 64)
        except BlockingIOError:
            return size, 0
        if not got:
            raise self._closed(i)
        stamp = 0
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS:
                seconds, nanoseconds = struct.unpack("qq", data[:16])
                stamp = seconds * 1_000_000_000 + nanoseconds
        return size + got, stamp

    def keep(self, i: int, pos: int, end: int) -> None:
        """Keep the incomplete frame at ``pos:end`` and answer any non-broadcast frames."""
        self.left[i] = bytes(self.view[pos:end]) if pos < end else b""
        if self.others:
            conn = self.conns[i]
            for frame in self.others:
                conn.handle_raw(frame)
            self.others.clear()
            if conn.closed:
                raise ConnectionError(f"{conn.name}: {conn.closed}")


def fanout(server: Server, duration: float, warmup: float, nodes: int = 100, senders: int = 10,
           window: int = 8, drain: float = 5.0, on_measure: Callable[[], None] | None = None,
           more: tuple[Server, ...] = (), place: Callable[[int], int] | None = None) -> Figures:
    """Scenario (a): ``nodes`` in one room, ``senders`` of them with ``window`` messages in flight.

    A message leaves flight when the probe (the last member) receives it.
    Every broadcast frame on every connection is counted by header; every
    frame of five fixed non-sending receivers (the probe among them) is
    decoded for latency and per-sender order. With ``more`` servers (a
    cluster), nodes are spread over all of them by ``place(index)`` (default:
    round-robin).
    """
    pool = Pool(server.port, *(other.port for other in more), place=place)
    try:
        conns = pool.open_many(nodes, "fan")
        group_id = _form_room(pool, conns).encode()
        quiet.wait()
        rx = Receivers(conns)
        probe = nodes - 1
        sampled = {probe} | {senders + k * (nodes - senders) // 5 for k in range(4)}
        kinds = [2 if i == probe else 1 if i in sampled else 0 for i in range(nodes)]
        last_seq = [[-1] * senders for _ in range(nodes)]
        counts = [0] * nodes
        next_seq = [0] * senders
        release = [0] * senders
        latencies: list[int] = []
        order_errors = 0
        clock = time.perf_counter_ns

        def send(sender: int, count: int) -> None:
            conn = conns[sender]
            seq = next_seq[sender]
            now = clock()
            frames = [conn.frame_bytes(_MESSAGE % (group_id, now, sender, seq + k)) for k in range(count)]
            next_seq[sender] = seq + count
            send_all(conn.sock, b"".join(frames))

        meter = CpuMeter(server)
        poll = pool.ep.poll
        start = clock()
        t_measure = start + int(warmup * 1e9)
        t_stop = t_measure + int(duration * 1e9)
        since = t_measure
        phase = total = total0 = total1 = in_flight = 0
        tm0 = tm1 = 0
        for sender in range(senders):
            send(sender, window)
        while True:
            now = clock()
            if phase == 0 and now >= t_measure:
                phase, tm0, total0 = 1, now, total
                meter.start()
                if on_measure is not None:
                    on_measure()
            elif phase == 1 and now >= t_stop:
                phase, tm1, total1 = 2, now, total
                in_flight = sum(next_seq) * (nodes - 1) - total
                meter.stop()
                stop_at = now + int(drain * 1e9)
            elif phase == 2 and (total >= sum(next_seq) * (nodes - 1) or now >= stop_at):
                break
            for fd, _ in poll(0.05):
                i = rx.slot[fd]
                end = rx.read(i)
                if kinds[i]:
                    pos, got, bad = decode_frames(rx.buf, end, rx.others, clock(), since, latencies,
                                                  last_seq[i], release if kinds[i] == 2 else None)
                    order_errors += bad
                else:
                    pos, got = count_frames(rx.buf, end, rx.others)
                counts[i] += got
                total += got
                rx.keep(i, pos, end)
            if phase < 2:
                for sender in range(senders):
                    if release[sender]:
                        send(sender, release[sender])
                        release[sender] = 0
        sent = sum(next_seq)
        lost = dup = 0
        for i in range(nodes):
            expected = sent - (next_seq[i] if i < senders else 0)
            lost += max(0, expected - counts[i])
            dup += max(0, counts[i] - expected)
        latencies.sort()
        seconds = (tm1 - tm0) / 1e9
        return {
            "deliveries/s": (total1 - total0) / seconds,
            "msgs/s": (total1 - total0) / seconds / (nodes - 1),
            "p50 ms": _percentile(latencies, 0.50),
            "p99 ms": _percentile(latencies, 0.99),
            "sent": sent,
            "delivered": total,
            "in flight at stop": in_flight,
            "lost": lost,
            "dup": dup,
            "order errors": order_errors,
            "samples": len(latencies),
            **meter.figures(),
        }
    finally:
        pool.close_all()


def rate(server: Server, duration: float, warmup: float = 1.0, nodes: int = 1000, members: int = 50,
         senders: int = 10, per_second: int = 1000, drain: float = 3.0,
         more: tuple[Server, ...] = ()) -> Figures:
    """Scenario (b): ``nodes`` registered, ``members`` in one room, ``senders`` paced to ``per_second``.

    Every delivery (``members - 1`` per message) is decoded, for messages
    sent after ``warmup``. Latency is taken twice: to the kernel's arrival
    stamp on the receiving socket (``p50/p99/max ms``: the gateway and the
    network stack only) and to when this process read it (``read p99 ms``:
    adds the generator's own queueing). Send times are CLOCK_REALTIME, like
    the kernel's stamps. With ``more`` servers, nodes are spread as in ``fanout``.
    """
    pool = Pool(server.port, *(other.port for other in more))
    try:
        conns = pool.open_many(nodes, "rate")
        room = conns[:members]
        group_id = _form_room(pool, room).encode()
        for conn in room:
            conn.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        quiet.wait()
        rx = Receivers(room)
        last_seq = [[-1] * senders for _ in range(members)]
        counts = [0] * members
        next_seq = [0] * senders
        latencies: list[int] = []
        read_latencies: list[int] = []
        order_errors = 0
        clock = time.time_ns
        meter = CpuMeter(server)
        poll = pool.ep.poll
        interval = 1e9 / per_second
        start = clock()
        t_measure = start + int(warmup * 1e9)
        t_stop = t_measure + int(duration * 1e9)
        k = phase = late = 0
        while True:
            now = clock()
            if phase == 0 and now >= t_measure:
                phase = 1
                meter.start()
            elif phase == 1 and now >= t_stop:
                phase = 2
                meter.stop()
                stop_at = now + int(drain * 1e9)
            elif phase == 2 and (sum(counts) >= k * (members - 1) or now >= stop_at):
                break
            due = start + int(k * interval)
            while phase < 2 and due <= now:
                sender = k % senders
                conn = room[sender]
                if now - due > 1_000_000:
                    late += 1
                send_all(conn.sock, conn.frame_bytes(_MESSAGE % (group_id, clock(), sender, next_seq[sender])))
                next_seq[sender] += 1
                k += 1
                due = start + int(k * interval)
            wait = 0.05 if phase == 2 else min(0.05, max(0.0, (due - clock()) / 1e9))
            for fd, _ in poll(wait):
                i = rx.slot.get(fd)
                if i is None:  # an idle node: heartbeats only
                    pool.service_one(pool.conns[fd])
                    continue
                end, stamp = rx.read_stamped(i)
                read_at = clock()
                before = len(latencies)
                pos, got, bad = decode_frames(rx.buf, end, rx.others, stamp or read_at, t_measure,
                                              latencies, last_seq[i], None)
                queued = read_at - stamp if stamp else 0
                read_latencies.extend(latency + queued for latency in latencies[before:])
                order_errors += bad
                counts[i] += got
                rx.keep(i, pos, end)
        sent = sum(next_seq)
        received = sum(counts)
        expected = sent * (members - 1)
        latencies.sort()
        read_latencies.sort()
        return {
            "p50 ms": _percentile(latencies, 0.50),
            "p99 ms": _percentile(latencies, 0.99),
            "max ms": latencies[-1] / 1e6 if latencies else float("nan"),
            "read p50 ms": _percentile(read_latencies, 0.50),
            "read p99 ms": _percentile(read_latencies, 0.99),
            "sent": sent,
            "received": received,
            "lost": max(0, expected - received),
            "dup": max(0, received - expected),
            "order errors": order_errors,
            "sends >1ms late": late,
            "samples": len(latencies),
            **meter.figures(),
        }
    finally:
        pool.close_all()


def memory(steps: tuple[int, ...] = (1000, 5000, 10000)) -> Figures:
    """Scenario (c): gateway RSS with 0 and then ``steps`` idle registered nodes."""
    server = start_gateway(max_nodes=11000)
    pool: Pool | None = None
    try:
        time.sleep(1.0)
        rss0 = server.rss_kb()
        rss: Figures = {"RSS 0 MB": rss0 / 1024}
        per_node: Figures = {}
        marginal: Figures = {}
        speed: Figures = {}
        previous = (0, rss0)
        pool = Pool(server.port)
        for target in steps:
            began = time.perf_counter()
            pool.open_many(target - len(pool), "idle", concurrency=40, timeout=240)
            seconds = time.perf_counter() - began
            deadline = time.monotonic() + 30
            while (nodes := server.health()["stats"]["totalNodes"]) != target:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"gateway reports {nodes} nodes, expected {target}")
                pool.service(0.2)
            pool.service(1.0)  # settle; heartbeats still answered
            now = server.rss_kb()
            rss[f"RSS {target} MB"] = now / 1024
            per_node[f"KB/node @{target}"] = (now - rss0) / target
            marginal[f"KB/node {previous[0]}-{target}"] = (now - previous[1]) / (target - previous[0])
            speed[f"set-ups/s to {target}"] = (target - previous[0]) / seconds
            previous = (target, now)
        return {**rss, **per_node, **marginal, **speed}
    finally:
        if pool is not None:
            pool.close_all()
        server.stop()
