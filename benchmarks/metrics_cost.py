"""What keeping metrics costs the fan-out, measured in one process.

Usage: python benchmarks/metrics_cost.py [--members 100] [--rounds 9]

Builds the real Router on the real rooms (LocalRooms) twice, once with the
metrics sink subscribed to its events and once without, puts ``--members``
nodes in one room on in-memory connections (a send is a list append, as a
WebSocket's is until the end of the reactor turn), and times one node's
broadcast to the others. Rounds alternate off and on; the medians and
their ratio are printed. Network, framing and the kernel are left out, so
the share the metrics take here is an upper bound of their share in a
real gateway (``loadgen.py fanout --metrics`` measures that one).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import timeit
from twisted.internet.task import Clock
from zope.interface import implementer

from wingman_gateway.connection import IConnection, Outbound
from wingman_gateway.events import Events
from wingman_gateway.limits import Limits
from wingman_gateway.metrics.sink import MetricsSink
from wingman_gateway.rooms import LocalRooms
from wingman_gateway.router import Router
from wingman_gateway.state import Node


@implementer(IConnection)
class Buffered:
    """A connection that keeps what it is sent until the buffer is read (bounded)."""

    transport_name = "websocket"
    peer = "memory"

    def __init__(self) -> None:
        self.pending: list[bytes] = []

    def send(self, message: Outbound) -> None:
        self.pending.append(message.data)
        if len(self.pending) >= 1024:
            self.pending.clear()

    def close(self, status: int, reason: str) -> None:
        pass


def build(members: int, metrics: bool) -> tuple[Router, Node]:
    events = Events()
    if metrics:
        events.subscribe(MetricsSink())
    clock = Clock()
    router = Router(clock, Limits(message_rate=0), rooms=LocalRooms(clock, events=events), events=events)
    nodes = []
    for index in range(members):
        node = router.connect(Buffered())
        router.receive(node, json.dumps({"type": "register", "payload": {"name": f"n{index}"}}))
        router.receive(node, json.dumps(
            {"type": "join_group", "payload": {"groupName": "room", "createIfNotExists": True}}))
        nodes.append(node)
    return router, nodes[0]


def per_broadcast(members: int, metrics: bool, number: int) -> float:
    router, sender = build(members, metrics)
    message = json.dumps({"type": "broadcast", "payload": {
        "groupName": "room", "message": {"type": "agent-text", "text": "hello, room"}}}).encode()
    # CPU time of this process: time spent waiting for a core (the machine is shared) is left out.
    best = min(timeit.repeat(lambda: router.receive(sender, message), number=number, repeat=5,
                             timer=time.process_time))
    return best / number * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=100, help="members of the room")
    parser.add_argument("--rounds", type=int, default=9, help="alternating off/on rounds")
    parser.add_argument("--number", type=int, default=2000, help="broadcasts timed per repeat")
    args = parser.parse_args(argv)
    if not (2 <= args.members <= 10000 and 1 <= args.rounds <= 50 and 1 <= args.number <= 100000):
        parser.error("bounds: 2 <= --members <= 10000, 1 <= --rounds <= 50, 1 <= --number <= 100000")
    runs: dict[bool, list[float]] = {False: [], True: []}
    print(f"one broadcast to {args.members - 1} members, in-process, CPU time, best of 5 x {args.number}")
    for index in range(args.rounds):
        for metrics in (False, True):
            runs[metrics].append(per_broadcast(args.members, metrics, args.number))
        print(f"  round {index + 1}: off {runs[False][-1]:.1f} us  on {runs[True][-1]:.1f} us  "
              f"on/off {runs[True][-1] / runs[False][-1]:.3f}", flush=True)
    off, on = statistics.median(runs[False]), statistics.median(runs[True])
    deliveries = args.members - 1
    print(f"median: off {off:.1f} us ({deliveries / off * 1e6:,.0f} deliveries/s)  "
          f"on {on:.1f} us ({deliveries / on * 1e6:,.0f} deliveries/s)  on/off {on / off:.3f}")
    print("target: on/off <= 1.05")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
