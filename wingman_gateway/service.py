"""Assembly of the gateway's one MultiService."""

from __future__ import annotations

import signal
from typing import Any

from twisted.application.internet import TimerService
from twisted.application.service import MultiService, Service
from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure

from wingman_gateway import portsfile
from wingman_gateway.auth import Authenticator, KeyRing, KeyRingWatcher
from wingman_gateway.bridge.session import Bridge
from wingman_gateway.config import ConfigError, GatewayConfig, address_text
from wingman_gateway.connection import CLOSE_GOING_AWAY
from wingman_gateway.discovery import discovery_services
from wingman_gateway.logs import get_logger
from wingman_gateway.router import Router
from wingman_gateway.systemd import SystemdNotifier
from wingman_gateway.tokenfile import read_token_file
from wingman_gateway.web import build_site
from wingman_gateway.websocket import GatewayWebSocketFactory

log = get_logger("wingman_gateway.service")

# How long shutdown waits for clients to take their 'going away' close.
SHUTDOWN_GRACE = 2.0


class ListenError(Exception):
    """A listener could not bind.

    An ``Exception`` (not ``SystemExit``) so that a daemonizing twistd
    reports it to its parent and removes the pid file; the reason is also
    logged as a critical event.
    """


class Listener(Service):
    """One endpoint-string listener; binding fails startup loudly."""

    announce = "wingman-gateway listening on {endpoint} ({address})"

    def __init__(self, description: str, factory: Factory, reactor: Any) -> None:
        self.description = description
        self.factory = factory
        try:
            self.endpoint = serverFromString(reactor, description)
        except (ValueError, KeyError, TypeError) as error:
            raise ConfigError(f"listen: bad endpoint {description!r}: {error}")
        except OSError as error:  # an ssl: endpoint's key or certificate file
            raise ConfigError(f"listen: {description!r}: cannot read {error.filename}: {error.strerror}")
        self.port: IListeningPort | None = None
        self.listening: defer.Deferred[IListeningPort] = defer.Deferred()
        self.setName(f"listener {description}")

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        outcome: list[Any] = []
        self.endpoint.listen(self.factory).addBoth(outcome.append)
        if not outcome:
            # Endpoints that bind later (systemd, onion) report when done.
            return
        result = outcome[0]
        if isinstance(result, Failure):
            reason = result.getErrorMessage()
            log.critical("cannot listen on {endpoint}: {reason}", endpoint=self.description, reason=reason)
            raise ListenError(f"wingman-gateway: cannot listen on {self.description}: {reason}")
        self._bound(result)

    def _bound(self, port: IListeningPort) -> None:
        self.port = port
        log.info(
            self.announce,
            endpoint=self.description,
            address=address_text(port.getHost()),
        )
        self.listening.callback(port)

    def startService(self) -> None:
        if self.port is None and not self.running:
            # Not started through twistd's privileged step (e.g. in tests).
            if not self.listening.called:
                self.privilegedStartService()
        super().startService()

    def stopService(self) -> defer.Deferred[None] | None:
        super().stopService()
        if self.port is not None:
            port, self.port = self.port, None
            return defer.maybeDeferred(port.stopListening)
        return None


class GatewayService(MultiService):
    """The Router, its listeners and its timers."""

    def __init__(self, config: GatewayConfig, reactor: Any) -> None:
        super().__init__()
        self.setName("wingman-gateway")
        self.config = config
        self.reactor = reactor
        self.keyring: KeyRing | None = None
        if config.keyring is not None:
            try:
                self.keyring = KeyRing.open(config.keyring, reactor, create=True)
            except OSError as error:
                raise ConfigError(f"keyring: cannot use {config.keyring}: {error.strerror or error}")
            except ValueError as error:
                raise ConfigError(f"keyring: {error}")
        shared_token = config.auth_token
        if config.auth_token_file is not None:
            shared_token = read_token_file(config.auth_token_file)
        authenticator = Authenticator(
            required=config.require_auth, shared_token=shared_token, keyring=self.keyring
        )
        self.router = Router(reactor, config.limits, authenticator, config.name)
        self.websocket_factory = GatewayWebSocketFactory(self.router, reactor)
        # The HTTP bridge (/bridge/*) on every listener, unless --no-bridge.
        self.bridge: Bridge | None = None
        if config.bridge is not None:
            self.bridge = Bridge(self.router, config.bridge, reactor)
            self.bridge.setServiceParent(self)
        self.listeners = [
            Listener(description, build_site(self.router, self.websocket_factory, self.bridge), reactor)
            for description in config.listen
        ]
        for listener in self.listeners:
            listener.setServiceParent(self)
        # The built-in SSH server (--ssh); it forwards only to the listeners above.
        self.ssh_listener: Listener | None = None
        if config.ssh is not None:
            from wingman_gateway.ssh import ssh_listener

            self.ssh_listener = ssh_listener(config, self.router, self.listeners, reactor)
            self.ssh_listener.setServiceParent(self)
        limits = config.limits
        pinger = TimerService(limits.ping_interval, self.router.ping_all)
        # Check for silent nodes often enough to drop them close to the timeout.
        sweeper = TimerService(max(limits.ping_timeout / 10, 0.05), self.router.drop_silent)
        for timer in (pinger, sweeper):
            timer.clock = reactor
            timer.setServiceParent(self)
        self.keyring_watcher: KeyRingWatcher | None = None
        if self.keyring is not None:
            # SIGHUP belongs to the whole service (see reload), not to the watcher.
            self.keyring_watcher = KeyRingWatcher(self.keyring, reactor, install_sighup=False)
            self.keyring_watcher.setServiceParent(self)
        self._sighup_installed = False
        self._previous_sighup: Any = None
        # Under systemd (Type=notify): READY=1 once listening, watchdog pings, STOPPING=1.
        self.notifier = SystemdNotifier.from_environment(self.whenListening, reactor)
        if self.notifier is not None:
            self.notifier.setServiceParent(self)
        # --discovery: mDNS announcer, tailnet reporter (see wingman_gateway.discovery).
        self.discovery = discovery_services(self, reactor)

    def startService(self) -> None:
        super().startService()
        if self.config.ports_file is not None:
            self.whenListening().addCallback(self._write_ports_file)
        try:
            self._previous_sighup = signal.signal(signal.SIGHUP, self._on_sighup)
            self._sighup_installed = True
        except ValueError:  # not the main thread (embedded in a test or a program)
            log.warn("SIGHUP reload not available outside the main thread")

    def _on_sighup(self, signum: int, frame: Any) -> None:
        self.reactor.callFromThread(self.reload)  # out of signal context

    def _write_ports_file(self, ports: Any) -> None:
        """--ports-file: every listener is bound; say where."""
        assert self.config.ports_file is not None
        ssh_fingerprint = getattr(self.ssh_listener, "fingerprint", None)
        content = portsfile.report(self.listeners, self.ssh_listener, ssh_fingerprint)
        try:
            portsfile.write(self.config.ports_file, content)
        except OSError as error:
            log.error("cannot write the ports file {path}: {reason}", path=self.config.ports_file,
                      reason=error.strerror)

    def _reload_token_file(self) -> None:
        path = self.config.auth_token_file
        if path is None:
            return
        try:
            token = read_token_file(path)
        except ConfigError as error:
            log.error("SIGHUP: {error}; the shared token loaded before stays in force", error=str(error))
            return
        self.router.authenticator.replace_shared_token(token)
        log.info("SIGHUP: reloaded the shared token from {path}", path=path)

    def reload(self) -> None:
        """SIGHUP (systemctl reload): re-read what may change at runtime."""
        if self.notifier is not None:
            self.notifier.reloading()
        self._reload_token_file()
        if self.keyring_watcher is not None:
            self.keyring_watcher.reload()
        elif self.config.auth_token_file is None:
            log.info("SIGHUP: nothing to reload (no --keyring, no --token-file)")
        if self.notifier is not None:
            self.notifier.reloaded()

    def whenListening(self) -> defer.Deferred[list[IListeningPort]]:
        """Fires once every listener is bound."""
        listeners = self.listeners + ([self.ssh_listener] if self.ssh_listener else [])
        return defer.gatherResults([listener.listening for listener in listeners])

    def stopService(self) -> defer.Deferred[None]:
        """Close every client with 'going away', then stop listening."""
        if self.notifier is not None:
            self.notifier.stopping()  # at once, not after the wait for clients
        for announcer in self.discovery:
            announcer.stopService()  # mDNS goodbyes at once, too
        if self._sighup_installed:
            previous = self._previous_sighup
            signal.signal(signal.SIGHUP, signal.SIG_DFL if previous is None else previous)
            self._sighup_installed = False
        sessions = list(self.router.sessions)
        for session in sessions:
            session.conn.close(CLOSE_GOING_AWAY, "gateway shutting down")
        waited: defer.Deferred[None] = defer.Deferred()
        if sessions:
            self.reactor.callLater(SHUTDOWN_GRACE, waited.callback, None)
            self._wait_for_clients(waited)
        else:
            waited.callback(None)
        waited.addCallback(lambda _: super(GatewayService, self).stopService())
        return waited

    def _wait_for_clients(self, waited: defer.Deferred[None]) -> None:
        """Finish ``waited`` early once every client has gone."""
        if waited.called:
            return
        if not self.router.sessions:
            waited.callback(None)
            return
        self.reactor.callLater(0.05, self._wait_for_clients, waited)
