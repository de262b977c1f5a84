"""Telling systemd how the gateway is doing (``Type=notify``, ``WatchdogSec=``).

Twisted has no sd_notify. The protocol is small: one datagram of
``KEY=VALUE`` lines sent to the AF_UNIX socket named by ``$NOTIFY_SOCKET``.
Without that variable nothing is sent, so the gateway runs the same outside
systemd.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any, Callable, Mapping

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IListeningPort
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from wingman_gateway.addresses import address_text
from wingman_gateway.logs import get_logger

log = get_logger("wingman_gateway.systemd")


def notify_address(environ: Mapping[str, str]) -> bytes | None:
    """The ``$NOTIFY_SOCKET`` address; a leading '@' is Linux's abstract namespace."""
    name = environ.get("NOTIFY_SOCKET", "")
    if name.startswith("@"):
        return b"\0" + os.fsencode(name[1:])
    if name.startswith("/"):
        return os.fsencode(name)
    return None  # unset, or a kind of socket we do not speak (vsock:)


def sd_notify(state: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Send one notification; False when nobody listens or the send failed.

    The socket is non-blocking: a manager that stopped reading must never
    stall the reactor, and a lost notification only costs a log line.
    """
    address = notify_address(environ)
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)
            sock.sendto(state.encode("utf-8"), address)
    except OSError as error:
        log.warn("cannot notify systemd: {reason}", reason=error.strerror or str(error))
        return False
    return True


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half of ``$WATCHDOG_USEC``), or None.

    ``$WATCHDOG_PID``, when set, names the one process the watchdog is for.
    """
    usec, owner = environ.get("WATCHDOG_USEC", ""), environ.get("WATCHDOG_PID", "")
    if not usec or (owner and owner != str(pid)):
        return None
    try:
        interval = int(usec) / 2_000_000
    except ValueError:
        interval = 0
    if interval <= 0:
        log.warn("ignoring WATCHDOG_USEC={usec!r}: not a positive integer", usec=usec)
        return None
    return interval


class SystemdNotifier(Service):
    """READY=1 once every listener accepts, STOPPING=1 on shutdown, watchdog pings between.

    READY waits for ``when_listening()`` so systemd never routes work (or
    starts dependent units) before every socket accepts, and the watchdog
    runs on the reactor, so a wedged reactor stops the pings and systemd
    restarts us.
    """

    name = "systemd notifier"

    def __init__(
        self,
        when_listening: Callable[[], defer.Deferred[list[IListeningPort]]],
        reactor: Any,
        environ: Mapping[str, str] = os.environ,
        pid: int | None = None,
    ) -> None:
        self._when_listening = when_listening
        self._reactor = reactor
        self._environ = environ
        self._pid = os.getpid() if pid is None else pid
        self._watchdog: LoopingCall | None = None
        self._pending: IDelayedCall | None = None
        self._stopping = False
        self.ready = False

    @classmethod
    def from_environment(
        cls,
        when_listening: Callable[[], defer.Deferred[list[IListeningPort]]],
        reactor: Any,
        environ: Mapping[str, str] = os.environ,
    ) -> SystemdNotifier | None:
        """A notifier when a manager set ``$NOTIFY_SOCKET``, else None."""
        if notify_address(environ) is None:
            return None
        return cls(when_listening, reactor, environ)

    def notify(self, *fields: str) -> bool:
        return sd_notify("\n".join(fields), self._environ)

    def startService(self) -> None:
        super().startService()
        self._when_listening().addCallbacks(self._listening, self._not_listening)
        interval = watchdog_interval(self._environ, self._pid)
        if interval is not None:
            self._watchdog = LoopingCall(self.notify, "WATCHDOG=1")
            self._watchdog.clock = self._reactor
            self._watchdog.start(interval, now=True)
            log.info("systemd watchdog: pinging every {interval}s", interval=interval)

    def _listening(self, ports: list[IListeningPort]) -> None:
        # Wait for the reactor to run, so the first connection is served at once.
        if self.running and not self._stopping:
            self._pending = self._reactor.callLater(0, self._ready, ports)

    def _not_listening(self, failure: Failure) -> None:
        log.failure("not telling systemd we are ready: a listener failed", failure)

    def _ready(self, ports: list[IListeningPort]) -> None:
        self._pending = None
        status = "serving on " + ", ".join(address_text(port.getHost()) for port in ports)
        self.ready = self.notify("READY=1", f"STATUS={status}", f"MAINPID={self._pid}")
        if self.ready:
            log.info("told systemd the gateway is ready ({status})", status=status)

    def reloading(self) -> None:
        """RELOADING=1 while the configuration is re-read (SIGHUP)."""
        monotonic_usec = int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1_000_000)
        self.notify("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec}", "STATUS=reloading")

    def reloaded(self) -> None:
        if self.ready and not self._stopping:
            self.notify("READY=1", "STATUS=reloaded")

    def stopping(self) -> None:
        """Say STOPPING=1 (once), before shutdown starts waiting for clients."""
        if self._stopping:
            return
        self._stopping = True
        if self._pending is not None and self._pending.active():
            self._pending.cancel()
        self._pending = None
        if self.notify("STOPPING=1", "STATUS=shutting down: closing client connections"):
            log.info("told systemd the gateway is stopping")

    def stopService(self) -> None:
        self.stopping()
        if self._watchdog is not None and self._watchdog.running:
            self._watchdog.stop()
        self._watchdog = None
        super().stopService()
