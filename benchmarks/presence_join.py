"""Cost of 1,000 nodes joining one room: presence per turn against per event.

Usage: python benchmarks/presence_join.py [--nodes 1000] [--runs 5]

The Router runs in this process on in-memory connections that count what
they are handed (envelopes and bytes), driven by a Clock: ``--per-turn``
joins arrive in each reactor turn. Each run measures, in the same process,
the gateway's presence as shipped (gathered per room per turn) and, as the
baseline, notices sent at once for each event (the behaviour before). It
prints each run and the median of the runs, and the ratios.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from twisted.internet.task import Clock
from zope.interface import implementer

from wingman_gateway.connection import IConnection, Outbound
from wingman_gateway.limits import Limits
from wingman_gateway.presence import Presence
from wingman_gateway.router import Router


@implementer(IConnection)
class Counting:
    transport_name = "memory"

    def __init__(self, tally: list[int], peer: str) -> None:
        self.tally = tally
        self.peer = peer

    def send(self, message: Outbound) -> None:
        self.tally[0] += 1
        self.tally[1] += len(message.data)

    def close(self, status: int, reason: str) -> None:
        pass


class Immediate(Presence):
    """The behaviour before: every event is sent at once, on its own."""

    def event(self, room: Any, node: Any, event: str, reason: str | None) -> None:
        super().event(room, node, event, reason)
        self.flush(room.id)


def run(nodes: int, per_turn: int, immediate: bool) -> tuple[float, int, int]:
    clock = Clock()
    router = Router(clock, Limits(max_nodes=nodes + 1, message_rate=0, byte_rate=0))
    if immediate:
        router.rooms.presence = Immediate(clock, router.now_ms)  # type: ignore[attr-defined]
    tally = [0, 0]
    sessions = []
    for n in range(nodes):
        node = router.connect(Counting(tally, f"tcp:10.0.{n // 250}.{n % 250}:1"))
        router.receive(node, b'{"type":"register","payload":{"name":"node-%d","capabilities":["chat"]}}' % n)
        sessions.append(node)
    clock.advance(0)
    tally[:] = [0, 0]
    join = b'{"type":"join_group","payload":{"groupName":"all","createIfNotExists":true}}'
    started = time.perf_counter()
    for n, node in enumerate(sessions):
        router.receive(node, join)
        if (n + 1) % per_turn == 0:
            clock.advance(0)  # the end of a reactor turn
    clock.advance(0)
    elapsed = time.perf_counter() - started
    return elapsed, tally[0], tally[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if not (2 <= args.nodes <= 5000 and 1 <= args.runs <= 20):
        parser.error("--nodes 2..5000, --runs 1..20")
    print(f"{args.nodes} nodes join one room; envelopes and bytes handed to connections (acks included)")
    for per_turn in (1, 10, 100):
        figures: dict[str, list[tuple[float, int, int]]] = {"per event": [], "per turn": []}
        for _ in range(args.runs):
            figures["per event"].append(run(args.nodes, per_turn, immediate=True))
            figures["per turn"].append(run(args.nodes, per_turn, immediate=False))
        medians = {}
        for label, runs in figures.items():
            seconds = statistics.median(r[0] for r in runs)
            envelopes = statistics.median(r[1] for r in runs)
            sent = statistics.median(r[2] for r in runs)
            medians[label] = (seconds, envelopes, sent)
            each = ", ".join(f"{r[0]:.3f}" for r in runs)
            print(f"  {per_turn:>3} joins/turn  {label:<9}  median {seconds:.3f} s  "
                  f"{envelopes:>9,.0f} envelopes  {sent / 1e6:8.1f} MB   (runs: {each} s)")
        base, new = medians["per event"], medians["per turn"]
        print(f"  {per_turn:>3} joins/turn  ratio per turn / per event: time {new[0] / base[0]:.2f}, "
              f"envelopes {new[1] / base[1]:.3f}, bytes {new[2] / base[2]:.2f}")


if __name__ == "__main__":
    main()
