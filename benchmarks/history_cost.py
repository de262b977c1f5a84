"""CPU cost of room history on the Router's broadcast path, in one process.

Usage: python benchmarks/history_cost.py [--runs 7] [--messages 20000] [--members 100]

A Router on a Clock (no sockets, no reactor), ``--members`` registered
nodes in one room whose connections only keep what they are sent, and one
of them broadcasting ``--messages`` agent-stream sized messages. Runs
alternate between history off (``--history-size 0``) and on (default
settings), and each is timed in CPU seconds of this process
(``time.process_time``), so other processes' load disturbs it less than
it does the wall-clock figures of ``loadgen.py``. Prints microseconds per
broadcast for each run, the medians and the ratio on/off. The transports'
own work (framing, writing) is left out, so the relative cost shown is an
upper bound of what a real gateway sees.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

from twisted.internet.task import Clock
from zope.interface import implementer

from wingman_gateway.connection import IConnection, Outbound
from wingman_gateway.history import HistorySettings, MemoryHistory
from wingman_gateway.limits import Limits
from wingman_gateway.rooms import LocalRooms
from wingman_gateway.router import Router

MESSAGE = b'{"type":"broadcast","payload":{"groupName":"room","message":{"type":"agent-stream","chunk":"%s"}}}'


@implementer(IConnection)
class Sink:
    transport_name = "memory"
    peer = "bench"

    def __init__(self) -> None:
        self.count = 0

    def send(self, message: Outbound) -> None:
        self.count += 1

    def close(self, status: int, reason: str) -> None:
        pass


def run(history: HistorySettings, messages: int, members: int) -> float:
    """CPU microseconds per broadcast."""
    clock = Clock()
    clock.advance(1_700_000_000)
    router = Router(clock, Limits(message_rate=0, max_nodes=members + 1), None, "bench",
                    LocalRooms(clock, MemoryHistory(clock, history)))
    nodes = []
    for n in range(members):
        node = router.connect(Sink())
        router.receive(node, b'{"type":"register","payload":{"name":"n%d"}}' % n)
        router.receive(node, b'{"type":"join_group","payload":{"groupName":"room","createIfNotExists":true}}')
        nodes.append(node)
    sender = nodes[0]
    frames = [MESSAGE % (b"token %d " % n * 4) for n in range(messages)]
    started = time.process_time()
    for n, frame in enumerate(frames):
        router.receive(sender, frame)
        if n % 100 == 0:
            clock.advance(0.01)  # 10 ms per 100 messages: TTL and windows see time pass
    spent = time.process_time() - started
    delivered = sum(node.conn.count for node in nodes[1:])
    assert delivered >= messages * (members - 1), delivered
    return spent / messages * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--members", type=int, default=100)
    args = parser.parse_args(argv)
    if not (1 <= args.runs <= 50 and 100 <= args.messages <= 1_000_000 and 2 <= args.members <= 10000):
        parser.error("bounds: 1 <= --runs <= 50, 100 <= --messages <= 1000000, 2 <= --members <= 10000")
    variants: dict[str, Any] = {"history off": HistorySettings(size=0), "history on": HistorySettings()}
    figures: dict[str, list[float]] = {label: [] for label in variants}
    print(f"{args.members} members, {args.messages} broadcasts per run, CPU us per broadcast (fan-out included)")
    for number in range(1, args.runs + 1):
        line = []
        for label, settings in variants.items():
            figures[label].append(run(settings, args.messages, args.members))
            line.append(f"{label} {figures[label][-1]:.1f}")
        print(f" run {number}/{args.runs}: " + "  ".join(line), flush=True)
    off, on = (statistics.median(figures[label]) for label in variants)
    print(f" median: history off {off:.1f} us  history on {on:.1f} us  on/off CPU {on / off:.3f}")
    print(f" throughput on/off (inverse): {off / on:.3f}  (target >= 0.90)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
