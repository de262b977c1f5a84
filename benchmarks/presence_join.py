"""Cost of 1,000 nodes joining one room: presence as shipped against per turn and per event.

Usage: python benchmarks/presence_join.py [--nodes 1000] [--runs 5] [--gap-ms 0.5]

The Router runs in this process on in-memory connections that count what
they are handed (envelopes and bytes), driven by a Clock: 1, 10 or 100
joins arrive in each reactor turn, and turns are ``--gap-ms`` apart (a
join acked over loopback, then the next one). Each run measures, in the
same process, the gateway's presence as shipped (per turn, and paced in
a room of more than ``presence.CROWD`` members), gathered per
turn only (the behaviour before), and notices sent at once for each event
(the behaviour before that). It prints each run and the median of the
runs, and the ratios.
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
from wingman_gateway.presence import MAX_PACE, Presence
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


def run(nodes: int, per_turn: int, kind: str, gap: float) -> tuple[float, int, int]:
    clock = Clock()
    router = Router(clock, Limits(max_nodes=nodes + 1, message_rate=0))
    if kind == "per event":
        router.rooms.presence = Immediate(clock, router.now_ms)  # type: ignore[attr-defined]
    elif kind == "per turn":
        router.rooms.presence = Presence(clock, router.now_ms, crowd=nodes)  # type: ignore[attr-defined]
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
            clock.advance(gap)  # the end of a reactor turn, and the wait for the next join
    clock.advance(MAX_PACE)  # the last paced notices go out
    elapsed = time.perf_counter() - started
    return elapsed, tally[0], tally[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--gap-ms", type=float, default=0.5)
    args = parser.parse_args()
    if not (2 <= args.nodes <= 5000 and 1 <= args.runs <= 20 and 0 <= args.gap_ms <= 100):
        parser.error("--nodes 2..5000, --runs 1..20, --gap-ms 0..100")
    print(f"{args.nodes} nodes join one room, turns {args.gap_ms:g} ms apart; envelopes and bytes"
          " handed to connections (acks included)")
    for per_turn in (1, 10, 100):
        figures: dict[str, list[tuple[float, int, int]]] = {"per event": [], "per turn": [], "shipped": []}
        for _ in range(args.runs):
            for kind, runs in figures.items():
                runs.append(run(args.nodes, per_turn, kind, args.gap_ms / 1000))
        medians = {}
        for label, runs in figures.items():
            seconds = statistics.median(r[0] for r in runs)
            envelopes = statistics.median(r[1] for r in runs)
            sent = statistics.median(r[2] for r in runs)
            medians[label] = (seconds, envelopes, sent)
            each = ", ".join(f"{r[0]:.3f}" for r in runs)
            print(f"  {per_turn:>3} joins/turn  {label:<9}  median {seconds:.3f} s  "
                  f"{envelopes:>9,.0f} envelopes  {sent / 1e6:8.1f} MB   (runs: {each} s)")
        new = medians["shipped"]
        for label in ("per event", "per turn"):
            base = medians[label]
            print(f"  {per_turn:>3} joins/turn  ratio shipped / {label}: time {new[0] / base[0]:.2f}, "
                  f"envelopes {new[1] / base[1]:.3f}, bytes {new[2] / base[2]:.2f}")


if __name__ == "__main__":
    main()
