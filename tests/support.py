"""Running the real ``twistd wingman-gateway`` process for integration tests."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

TWISTD = str(Path(sys.executable).with_name("twistd"))
_LISTENING = re.compile(r"listening on (\S+) \((.*):(\d+)\)")


class GatewayProcess:
    """A gateway started with ``twistd -n``; its log is collected as it runs."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None, cwd: str | None = None):
        self.args = args
        self.lines: list[str] = []
        self.ports: list[int] = []
        self._seen = threading.Condition()
        command = [TWISTD, "--nodaemon", "--pidfile=", "wingman-gateway", *args]
        self.proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
            cwd=cwd,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._seen:
                self.lines.append(line.rstrip("\n"))
                match = _LISTENING.search(line)
                if match:
                    self.ports.append(int(match.group(3)))
                self._seen.notify_all()
        with self._seen:
            self._seen.notify_all()

    @property
    def log(self) -> str:
        with self._seen:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 15.0) -> re.Match[str]:
        """Wait for a log line matching ``pattern``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._seen:
            while True:
                for line in self.lines:
                    match = regex.search(line)
                    if match:
                        return match
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no log line matching {pattern!r}; log:\n{self.log}")
                self._seen.wait(min(left, 0.2))

    def wait_listening(self, count: int = 1, timeout: float = 15.0) -> list[int]:
        deadline = time.monotonic() + timeout
        with self._seen:
            while len(self.ports) < count:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise AssertionError(f"gateway did not start; log:\n{self.log}")
                self._seen.wait(min(left, 0.2))
            return list(self.ports)

    @property
    def port(self) -> int:
        return self.wait_listening()[0]

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM the process we started, by its pid; returns its exit code."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout)
        self._reader.join(timeout)
        return self.proc.returncode

    def wait_exit(self, timeout: float = 15.0) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(timeout)
        return code


def start_gateway(*args: str, env: dict[str, str] | None = None) -> GatewayProcess:
    """Start a gateway on a free loopback port (unless args give listeners)."""
    argv = list(args)
    if not any(a.startswith("--listen") or a.startswith("--port") for a in argv):
        argv = ["--listen", "tcp:0:interface=127.0.0.1", *argv]
    gateway = GatewayProcess(argv, env=env)
    gateway.wait_listening()
    return gateway


class Node:
    """A test node speaking protocol v1 through the independent ``websockets`` client."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        self.ws: ClientConnection = connect(url, open_timeout=10, **kwargs)
        self.node_id: str | None = None
        self._next_id = 0

    def send(self, envelope: dict[str, Any]) -> None:
        self.ws.send(json.dumps(envelope))

    def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        return json.loads(self.ws.recv(timeout))

    def recv_type(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        """Next envelope of ``kind``, skipping heartbeat pings and presence notices."""
        deadline = time.monotonic() + timeout
        while True:
            message = self.recv(max(deadline - time.monotonic(), 0.01))
            if message["type"] == kind:
                return message
            if message["type"] not in ("ping", "presence"):
                raise AssertionError(f"expected {kind}, got {message}")

    def request(self, kind: str, payload: dict[str, Any] | None = None, **envelope: Any) -> dict[str, Any]:
        """Send with a fresh messageId and return the ack or error that answers it."""
        self._next_id += 1
        message_id = f"m{self._next_id}"
        body = {"type": kind, "messageId": message_id, **envelope}
        if payload is not None:
            body["payload"] = payload
        self.send(body)
        deadline = time.monotonic() + 5
        while True:
            reply = self.recv(max(deadline - time.monotonic(), 0.01))
            if reply.get("messageId") == message_id:
                return reply

    def register(self, name: str, **extra: Any) -> dict[str, Any]:
        reply = self.request("register", {"name": name, **extra})
        if reply["type"] == "ack":
            self.node_id = reply["payload"]["nodeId"]
        return reply

    def join(self, room: str, create: bool = True) -> dict[str, Any]:
        return self.request("join_group", {"groupName": room, "createIfNotExists": create})

    def close(self) -> None:
        self.ws.close()
