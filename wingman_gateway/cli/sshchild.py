"""The user's OpenSSH ``ssh`` as a child process that never outlives us.

It is started through a tiny Python shim that asks Linux to send it
SIGTERM when its parent dies (``prctl(PR_SET_PDEATHSIG)``, kept across
``exec``), then becomes ``ssh`` in the same process: even a SIGKILLed
``wingman`` leaves no ssh behind. Stopping is by pid: SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from typing import Any, Callable

from twisted.internet import defer
from twisted.internet.error import ProcessDone, ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

# argv: PARENT_PID PROGRAM ARGS...; exits at once if the parent is already gone.
_SHIM = """\
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
except (AttributeError, OSError):
    pass
if os.getppid() != int(sys.argv[1]):
    os._exit(1)
os.execvp(sys.argv[2], sys.argv[2:])
"""
KILL_AFTER = 3.0


class SSHChild(ProcessProtocol):
    """One ``ssh`` run: its stderr handed over line by line, its exit status reported."""

    def __init__(self, reactor: Any, argv: list[str], on_line: Callable[[str], None]) -> None:
        self.reactor = reactor
        self.argv = argv
        self.on_line = on_line
        self.recent: deque[str] = deque(maxlen=8)
        self.status: int | None = None
        self._waiting: list[defer.Deferred[int]] = []
        self._partial = b""
        self._kill: Any = None

    @property
    def pid(self) -> int | None:
        return getattr(self.transport, "pid", None)

    def start(self) -> None:
        python = sys.executable
        self.reactor.spawnProcess(
            self, python, [python, "-I", "-c", _SHIM, str(os.getpid()), *self.argv],
            env=dict(os.environ), childFDs={0: "w", 1: "r", 2: "r"},
        )
        self.transport.closeStdin()  # type: ignore[union-attr]  # ssh -N reads nothing

    def ended(self) -> defer.Deferred[int]:
        """Fires with the exit status (255 for ssh's own errors, -N for signal N)."""
        if self.status is not None:
            return defer.succeed(self.status)
        waiting: defer.Deferred[int] = defer.Deferred()
        self._waiting.append(waiting)
        return waiting

    def stop(self) -> defer.Deferred[int]:
        """SIGTERM, SIGKILL after a grace period; fires once the process is gone."""
        if self.status is None and self.transport is not None:
            try:
                self.transport.signalProcess("TERM")
            except ProcessExitedAlready:
                pass
            else:
                self._kill = self.reactor.callLater(KILL_AFTER, self._force)
        return self.ended()

    def _force(self) -> None:
        try:
            assert self.transport is not None  # the process was started
            self.transport.signalProcess("KILL")
        except ProcessExitedAlready:
            pass

    def errReceived(self, data: bytes) -> None:
        *lines, self._partial = (self._partial + data).split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8", "replace").rstrip("\r")
            if line:
                if not line.startswith("debug"):
                    self.recent.append(line)
                self.on_line(line)

    def outReceived(self, data: bytes) -> None:
        pass  # ssh -N prints nothing on stdout

    def processEnded(self, reason: Failure) -> None:
        if self._kill is not None and self._kill.active():
            self._kill.cancel()
        if self._partial:
            self.errReceived(b"\n")
        value = reason.value
        if reason.check(ProcessDone):
            self.status = 0
        elif getattr(value, "signal", None) is not None:
            self.status = -int(getattr(value, "signal"))
        else:
            self.status = getattr(value, "exitCode", None) or 1
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(self.status)

    def explain(self) -> str:
        """Why ssh stopped, from its last error lines."""
        said = "; ".join(line for line in self.recent if not line.startswith("Warning: Permanently"))
        return f"ssh exited with status {self.status}" + (f": {said}" if said else "")
