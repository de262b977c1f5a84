"""Connection scenarios: set-up rate, a reconnect storm, a presence storm.

Like ``scenarios``, each takes a server the caller started and stops and
returns its figures.
"""

from __future__ import annotations

import time

from procs import CpuMeter, Server, quiet
from scenarios import Figures
from wsclient import Conn, Pool


def setup_rate(server: Server, nodes: int, concurrency: int, upgrade_only: bool = False) -> Figures:
    """``nodes`` connected, upgraded and registered (or only upgraded), ``concurrency`` at a time."""
    pool = Pool(server.port)
    try:
        quiet.wait()
        meter = CpuMeter(server)
        meter.start()
        began = time.perf_counter()
        pool.open_many(nodes, "set", concurrency=concurrency, upgrade_only=upgrade_only)
        seconds = time.perf_counter() - began
        meter.stop()
        # The server's CPU time per node: steadier than nodes/s when others load the machine.
        return {"nodes/s": nodes / seconds, "seconds": seconds,
                "server us/node": meter.theirs * seconds / nodes * 1e6, **meter.figures()}
    finally:
        pool.close_all()


def reconnect(server: Server, nodes: int, rooms: int) -> Figures:
    """``nodes`` connect at once to a fresh gateway, register and join one of ``rooms`` rooms each.

    What a gateway restart looks like to it: every client reconnecting and
    rejoining its room in the same instant. All connections are started
    before the first one is served (``concurrency=nodes``).
    """
    pool = Pool(server.port)
    try:
        quiet.wait()
        meter = CpuMeter(server)
        meter.start()
        began = time.perf_counter()
        pool.open_many(nodes, "back", concurrency=nodes, rooms=rooms, timeout=60)
        seconds = time.perf_counter() - began
        meter.stop()
        stats = server.health()["stats"]
        if stats["totalNodes"] != nodes or stats["totalGroups"] != rooms:
            raise RuntimeError(f"gateway reports {stats}, expected {nodes} nodes in {rooms} rooms")
        # The gateway's CPU seconds over the storm: steadier than the wall time when others load the machine.
        return {"all back in s": seconds, "nodes/s": nodes / seconds, "server CPU s": meter.theirs * seconds,
                **meter.figures()}
    finally:
        pool.close_all()


def _join(conn: Conn) -> dict[str, object]:
    return {"type": "join_group", "payload": {"groupName": "crowd", "createIfNotExists": True}}


def presence(server: Server, nodes: int) -> Figures:
    """``nodes`` registered nodes join one room one after another (each after the last's ack).

    Every join tells every member (and its ack lists them all), so the
    bytes sent grow with nodes²; what the gateway holds at any moment must
    not. The peak RSS over the joins (VmHWM, reset just before) less the
    RSS before them is that moment's cost.
    """
    pool = Pool(server.port)
    try:
        conns = pool.open_many(nodes, "crowd")
        pool.service(0.5)
        quiet.wait(pool.service)
        before = server.rss_kb()
        server.reset_peak()
        meter = CpuMeter(server)
        meter.start()
        began = time.perf_counter()
        for conn in conns:
            pool.request([conn], _join)
        seconds = time.perf_counter() - began
        meter.stop()
        peak = server.peak_rss_kb()
        return {"all joined in s": seconds, "joins/s": nodes / seconds,
                "peak RSS growth MB": (peak - before) / 1024, **meter.figures()}
    finally:
        pool.close_all()
