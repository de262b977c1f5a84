"""A tor process of the gateway's own, for ``--onion`` without ``--tor-control``.

``txtorcon.launch`` fires only once tor has bootstrapped to 100 %, which
takes a working network (and never happens with ``DisableNetwork 1``); an
onion service can be added long before that, and tor publishes it when it
gets there. So the gateway starts tor itself and attaches to its control
socket like to any other tor (``txtorcon.build_tor_connection``), once the
socket accepts. ``__OwningControllerProcess`` makes tor exit with the
gateway, even when the gateway is killed.
"""

from __future__ import annotations

import collections
import os
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from txtorcon.util import find_tor_binary

from wingman_gateway.logs import get_logger

log = get_logger("wingman_gateway.onion.launch")

# Read no torrc but --tor-config's (whose existence is checked at startup).
_NO_FILE = "/nonexistent/torrc"
STOP_GRACE = 5.0  # SIGTERM, then SIGKILL after this long


class TorNotFound(ValueError):
    """No tor program to launch."""


class TorProcess(ProcessProtocol):
    """One tor, its data directory and control socket; started again after it exits."""

    def __init__(self, reactor: Any, data_directory: str, torrc: str | None = None,
                 binary: str | None = None) -> None:
        self.reactor = reactor
        self.data_directory = Path(data_directory)
        self.control_socket = self.data_directory / "control.sock"
        self.torrc = torrc
        self.binary = binary
        self.pid: int | None = None
        self._process: Any = None
        self.ended: defer.Deferred[None] = defer.succeed(None)
        self.last_lines: collections.deque[str] = collections.deque(maxlen=5)

    @property
    def control_endpoint(self) -> str:
        return f"unix:{self.control_socket}"

    @property
    def running(self) -> bool:
        return self.pid is not None

    def find_binary(self) -> str:
        binary = self.binary or find_tor_binary()
        if binary is None:
            raise TorNotFound("cannot launch tor: no tor program found (install tor, or give --tor-control)")
        return binary

    def start(self) -> None:
        """Spawn tor (unless it runs); its control socket accepts a moment later."""
        if self.running:
            return
        binary = self.find_binary()
        self.data_directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.data_directory, 0o700)  # tor refuses a data directory others can read
        try:
            self.control_socket.unlink()
        except FileNotFoundError:
            pass
        # Only the settings below, plus --tor-config's file; never the system torrc.
        args = [binary, "--defaults-torrc", _NO_FILE, "-f", self.torrc or _NO_FILE, "--ignore-missing-torrc",
                "DataDirectory", str(self.data_directory),
                "ControlPort", f"unix:{self.control_socket}", "CookieAuthentication", "1",
                "SocksPort", "0", "__OwningControllerProcess", str(os.getpid()),
                "Log", "notice stdout"]
        self.ended = defer.Deferred()
        self.last_lines.clear()
        self._process = self.reactor.spawnProcess(self, binary, args=args, env={"HOME": str(self.data_directory)})
        self.pid = self._process.pid
        log.info("onion: launched tor (pid {pid}, data directory {directory})",
                 pid=self.pid, directory=str(self.data_directory))

    def outReceived(self, data: bytes) -> None:
        for line in data.decode("utf-8", "replace").splitlines():
            self.last_lines.append(line)
            log.debug("tor: {line}", line=line)

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        pid, self.pid = self.pid, None
        if reason.check(ProcessDone):
            log.info("onion: tor (pid {pid}) exited", pid=pid)
        else:
            code = getattr(reason.value, "exitCode", None) if reason.check(ProcessTerminated) else None
            log.warn("onion: tor (pid {pid}) ended ({reason}); last output: {output}",
                     pid=pid, reason=code if code is not None else reason.getErrorMessage(),
                     output=" | ".join(self.last_lines))
        self.ended.callback(None)

    def stop(self) -> defer.Deferred[None]:
        """SIGTERM (SIGKILL after STOP_GRACE); fires when tor has exited."""
        if not self.running:
            return self.ended
        ended = self.ended
        self._process.signalProcess("TERM")
        kill = self.reactor.callLater(STOP_GRACE, self._kill)
        ended.addBoth(lambda result: (kill.cancel() if kill.active() else None, result)[1])
        return ended

    def _kill(self) -> None:
        if self.running:
            log.warn("onion: tor did not exit on SIGTERM; killing it")
            self._process.signalProcess("KILL")
