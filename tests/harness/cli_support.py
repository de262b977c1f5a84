"""Driving the real ``wingman`` command in tests."""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from harness.background import stop_process
from harness.support import Node

WINGMAN = str(Path(sys.executable).with_name("wingman"))


def free_port() -> int:
    """A loopback port free right now (the gateway binds it a moment later)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wingman(home: Path, *args: str, timeout: float = 60,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``wingman ARGS`` to its end with this WINGMAN_HOME (and ``env`` added)."""
    return subprocess.run(
        [WINGMAN, *args], env={**os.environ, "WINGMAN_HOME": str(home), **(env or {})},
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )


class LineProcess:
    """A ``wingman`` process fed and read line by line, every wait bounded."""

    def __init__(self, home: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [WINGMAN, *args], env={**os.environ, "WINGMAN_HOME": str(home), **(env or {})},
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.errors: list[str] = []
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines.put), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, self.errors.append), daemon=True).start()

    @staticmethod
    def _pump(stream: Any, put: Any) -> None:
        for line in stream:
            put(line.rstrip("\n"))

    def send(self, value: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(value) + "\n")
        self.proc.stdin.flush()

    def read(self, timeout: float = 10.0) -> dict[str, Any]:
        try:
            return json.loads(self.lines.get(timeout=timeout))
        except queue.Empty:
            raise AssertionError(f"no output within {timeout} s; stderr: {self.errors}") from None

    def read_until(self, predicate: Any, timeout: float = 10.0, limit: int = 200) -> dict[str, Any]:
        for _ in range(limit):
            record = self.read(timeout)
            if predicate(record):
                return record
        raise AssertionError("expected output never came")

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def stop(self) -> int:
        return stop_process(self.proc)


def converse(cli: LineProcess, ws: Node) -> None:
    """The terminal node and the WebSocket node hear each other."""
    cli.send({"type": "agent-stream", "delta": "from the terminal"})
    got = ws.recv_type("broadcast")
    assert got["payload"] == {"type": "agent-stream", "delta": "from the terminal"}
    assert got["fromName"] == "term"
    ws.request("broadcast", {"groupId": "ops", "message": {"reply": "from ws"}})
    heard = cli.read_until(lambda r: r.get("type") == "broadcast")
    assert heard["payload"] == {"reply": "from ws"} and heard["fromName"] == "ws"
