"""A flooding client in a process of its own, and a watcher timing its pings.

The flooder runs in another process so that its sending does not hold the
test's GIL: the round trips measured are the gateway's, not the test's.
"""

from __future__ import annotations

import json
import multiprocessing
import statistics
import threading
import time
from collections import Counter
from typing import Any

from harness.support import Node, reply_to

MiB = 1024 * 1024


def rtts_while(node: Node, running: threading.Event, out: list[float]) -> None:
    """Ping round trips every 5 ms (within the heartbeat rate limit) while ``running`` is set."""
    for n in range(4000):
        if not running.is_set():
            return
        started = time.perf_counter()
        node.send({"type": "ping", "messageId": n})
        reply_to(node, n)
        out.append(time.perf_counter() - started)
        time.sleep(0.005)


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def small_objects(size: int) -> str:
    """``[{},{},...]``: valid JSON of about ``size`` bytes, the costliest shape to decode."""
    return "[" + ",".join(["{}"] * ((size - 2) // 3)) + "]"


def _flood(url: str, register: bool, size: int, count: int, seconds: float, out: Any) -> None:
    node = Node(url)
    if register:
        node.register("flooder")
        node.join("flood")
        envelope = '{"type":"broadcast","messageId":"f","payload":{"groupName":"flood","message":%s}}'
    else:
        envelope = '{"type":"register","messageId":"f","payload":{"name":"f","metadata":%s}}'
    message = envelope % small_objects(size - len(envelope))
    sent = 0
    started = time.monotonic()
    while sent < count and time.monotonic() - started < seconds:
        node.ws.send(message)
        sent += 1
    elapsed = time.monotonic() - started
    node.send({"type": "ping", "messageId": "end"})
    codes: Counter[str] = Counter()
    errors: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        reply = json.loads(node.ws.recv(deadline - time.monotonic()))
        if reply.get("messageId") == "end":
            break
        if reply["type"] == "ping" or reply.get("messageId") not in ("f", None):
            continue  # (a refusal by size alone has no messageId: the message is never read)
        code = reply["payload"]["code"] if reply["type"] == "error" else reply["type"]
        codes[code] += 1
        errors.setdefault(code, reply)
    node.close()
    out.put({"sent": sent, "seconds": elapsed, "size": len(message), "codes": dict(codes), "replies": errors})


def flood(url: str, register: bool, size: int = MiB - 1024, count: int = 2000,
          seconds: float = 4.0) -> multiprocessing.Process:
    """Start a flooder; ``result(process)`` gives its tally when it is done."""
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    process = context.Process(target=_flood, args=(url, register, size, count, seconds, out))
    process.start()
    process.out = out  # type: ignore[attr-defined]  # the tally comes back here
    return process


def result(process: multiprocessing.Process, timeout: float = 60.0) -> dict[str, Any]:
    tally: dict[str, Any] = process.out.get(timeout=timeout)  # type: ignore[attr-defined]
    process.join(10)
    return tally
