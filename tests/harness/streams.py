"""Traffic that keeps flowing while a test does something else: a node that
broadcasts numbered messages, and nodes whose arrivals are collected, each on
a thread of its own (bounded in count and time; a node is used by one thread)."""

from __future__ import annotations

import threading
import time
from typing import Any

from harness.support import Node, wait_until


class _Loop:
    """``step`` repeated on a thread until stopped, ``step`` says it is done, or ``seconds`` pass."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "_Loop":
        self._thread.start()
        return self

    def _run(self) -> None:
        deadline = time.monotonic() + self.seconds
        while not self._stop.is_set() and time.monotonic() < deadline and self.step():
            pass

    def step(self) -> bool:
        raise NotImplementedError

    def halt(self) -> None:
        self._stop.set()
        self._thread.join(10)
        assert not self._thread.is_alive(), f"{type(self).__name__} did not stop"


class Streamer(_Loop):
    """Broadcasts 0, 1, 2, … into ``room`` every ``interval`` seconds, each
    waiting for its ack, until stopped or ``most`` messages or ``seconds`` have passed."""

    def __init__(self, node: Node, room: str, interval: float = 0.02, most: int = 5000,
                 seconds: float = 120.0) -> None:
        super().__init__(seconds)
        self.node, self.room, self.interval, self.most = node, room, interval, most
        self.sent = 0
        self.refused: list[dict[str, Any]] = []

    def step(self) -> bool:
        ack = self.node.request("broadcast", {"groupName": self.room, "message": self.sent})
        if ack["type"] != "ack":
            self.refused.append(ack)
        self.sent += 1
        self._stop.wait(self.interval)
        return self.sent < self.most

    def stop(self) -> int:
        """Stop, and how many were sent."""
        self.halt()
        return self.sent


class Collector(_Loop):
    """Everything ``node`` receives (pings aside), until stopped; at most ``seconds``."""

    def __init__(self, node: Node, seconds: float = 120.0) -> None:
        super().__init__(seconds)
        self.node = node
        self.received: list[dict[str, Any]] = []

    def step(self) -> bool:
        try:
            message = self.node.recv(0.1)
        except TimeoutError:
            return True
        if message["type"] != "ping":
            self.received.append(message)
        return True

    def payloads(self, kind: str = "broadcast") -> list[Any]:
        return [message["payload"] for message in list(self.received) if message["type"] == kind]

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        """Until at least ``count`` broadcasts have arrived (bounded)."""
        wait_until(lambda: len(self.payloads()) >= count, timeout, f"{count} broadcasts at {self.node}")

    def stop(self) -> list[dict[str, Any]]:
        self.halt()
        return self.received
