"""A helper process for tests: output collected line by line, stopped by its pid."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from typing import Any


def stop_process(proc: "subprocess.Popen[Any]", timeout: float = 10.0) -> int:
    """SIGTERM a process the test started (by its pid), SIGKILL if it lingers; its exit status."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout)
    return proc.returncode  # type: ignore[return-value]


class Background:
    """A process started by a test; every wait is bounded and ``stop`` kills it by pid."""

    def __init__(self, command: list[str], env: dict[str, str] | None = None,
                 stdin: bool = False, cwd: str | None = None, exact_env: bool = False) -> None:
        """``env`` adds to this process's environment, or replaces it with ``exact_env``."""
        self.command = command
        self.lines: list[str] = []
        self._seen = threading.Condition()
        self.proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            env=dict(env or {}) if exact_env else {**os.environ, **(env or {})}, cwd=cwd,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._seen:
                self.lines.append(line.rstrip("\n"))
                self.line_received(line)
                self._seen.notify_all()
        with self._seen:
            self._seen.notify_all()

    def line_received(self, line: str) -> None:
        """Called for every line (under the lock), before waiters wake."""

    @property
    def output(self) -> str:
        with self._seen:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 15.0, start: int = 0) -> re.Match[str]:
        """The first line (from line ``start`` on) matching ``pattern``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._seen:
            while True:
                for line in self.lines[start:]:
                    match = regex.search(line)
                    if match:
                        return match
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(
                        f"no line matching {pattern!r} from {self.command[:6]}; output:\n{self.output}"
                    )
                self._seen.wait(min(left, 0.2))

    def send_line(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM by pid, SIGKILL if it lingers; the exit status."""
        code = stop_process(self.proc, timeout)
        self._reader.join(timeout)
        return code

    def wait_exit(self, timeout: float = 30.0) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(timeout)
        return code


def stop_all(processes: list[Any]) -> None:
    """Stop every process in the list (newest first), whatever happens to one of them."""
    for process in reversed(processes):
        try:
            process.stop()
        except Exception:  # noqa: BLE001 - keep stopping the others
            pass
