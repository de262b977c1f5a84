"""The wiring: the one module that knows every part of the gateway.

``GatewayService`` (the one MultiService) builds the Router on its rooms,
the transports, one Site per listener, the timers, the key-ring watcher,
systemd notification and discovery. Every feature gets plain values
(settings, callables, the ``Offer`` once listening); nothing but the
twistd entry point (``tap``) imports this module.
"""

from __future__ import annotations

import gc
import signal
from typing import Any

from twisted.application.internet import TimerService
from twisted.application.service import MultiService
from twisted.internet import defer
from twisted.internet.interfaces import IListeningPort
from twisted.web.resource import Resource
from twisted.web.server import Site

from wingman_gateway import __version__, portsfile
from wingman_gateway.admission import Admission, drop_unregistered
from wingman_gateway.admin import Admin
from wingman_gateway.audit import AuditLog
from wingman_gateway.auth import Authenticator, KeyRing, KeyRingWatcher
from wingman_gateway.checks import ConfigError
from wingman_gateway.config import GatewayConfig
from wingman_gateway.connection import CLOSE_GOING_AWAY
from wingman_gateway.discovery import announcers
from wingman_gateway.gate import GatedFactory
from wingman_gateway.events import Events
from wingman_gateway.listener import Listener
from wingman_gateway.logs import get_logger
from wingman_gateway.metrics import GatewayMetrics
from wingman_gateway.metrics.gauges import GaugeSources
from wingman_gateway.offer import Bound, Offer
from wingman_gateway.onion import listener_target, onion_service
from wingman_gateway.history import MemoryHistory
from wingman_gateway.rooms import LocalRooms
from wingman_gateway.router import Router
from wingman_gateway.systemd import SystemdNotifier
from wingman_gateway.transports.bridge.cors import CorsPolicy
from wingman_gateway.tokenfile import read_token_file
from wingman_gateway.transports.bridge.resources import bridge_resource
from wingman_gateway.transports.bridge.session import Bridge
from wingman_gateway.transports.websocket import GatewayWebSocketFactory, websocket_resource
from wingman_gateway.web.api import ApiResource
from wingman_gateway.web.console import console_resource
from wingman_gateway.web.origin import page_hosts
from wingman_gateway.web.credential import (
    NO_ADMIN,
    AdminCredential,
    Refused,
    admin_gate,
    stats_gate,
)
from wingman_gateway.web.health import HealthSources
from wingman_gateway.web.site import build_site

log = get_logger("wingman_gateway.service")

# How long shutdown waits for clients to take their 'going away' close.
SHUTDOWN_GRACE = 2.0
# Allocations between young collections while the gateway runs (Python: 700).
GC_YOUNG = 50_000


def _bound(listener: Listener | None) -> Bound | None:
    if listener is None or listener.port is None:
        return None
    return Bound.of(listener.description, listener.port.getHost())


class GatewayService(MultiService):
    """The Router, its transports, listeners and timers."""

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
        # What happens is emitted once; the audit log and the metrics subscribe.
        self.events = Events()
        self.audit: AuditLog | None = None
        if config.audit_log is not None:
            self.audit = AuditLog(config.audit_log, reactor)
            self.audit.setServiceParent(self)
            self.events.subscribe(self.audit)
        self.admin_credential = (
            AdminCredential(config.admin_token_file) if config.admin_token_file else None
        )
        # --cluster: rooms shared with the other gateways through Redis.
        self.cluster: Any = None
        rooms: Any = LocalRooms(reactor, MemoryHistory(reactor, config.history), self.events)
        if config.cluster is not None:
            from wingman_gateway.cluster.registry import ClusterMember, new_gateway_id
            from wingman_gateway.cluster.rooms import ClusterRooms
            from wingman_gateway.cluster.wire import Names

            rooms = ClusterRooms(reactor, new_gateway_id(), Names(config.cluster.db), self.events,
                                 config.history)
            self.cluster = ClusterMember(
                config.cluster, rooms, config.name, config.require_auth, self.whenOffered, reactor
            )
            self.cluster.setServiceParent(self)
        # Caps per source and in all, counted at every listener's door.
        self.admission = Admission(config.admission)
        self.router = Router(reactor, config.limits, authenticator, config.name, rooms,
                             admission=self.admission, events=self.events)
        # The transports served over HTTP: /ws, and /bridge/* unless --no-bridge.
        # Both follow one origin policy (--cors-origin) for web pages.
        websocket_factory = GatewayWebSocketFactory(self.router, reactor)
        self.bridge: Bridge | None = None
        hosts = page_hosts((*config.allowed_hosts, config.name), config.listen, config.require_auth)
        origins = CorsPolicy(frozenset(config.bridge.cors_origins if config.bridge else ()), hosts)
        children: dict[bytes, Any] = {
            b"ws": websocket_resource(websocket_factory, origins.allows, hosts)
        }
        if config.bridge is not None:
            self.bridge = Bridge(self.router, config.bridge, reactor, origins)
            self.bridge.setServiceParent(self)
            children[b"bridge"] = bridge_resource(self.bridge)
        if config.console:
            children[b"console"] = console_resource()
        # The server API, and /metrics behind the admin credential.
        children[b"api"] = ApiResource(Admin(self.router), self.admin_credential, self.events)
        self.metrics_listener: Listener | None = None
        if config.metrics:
            self._add_metrics(children)
        else:  # no metrics are kept: /metrics says why, as with metrics but no credential
            children[b"metrics"] = Refused(NO_ADMIN)
        # --onion: the first TCP listener as a Tor onion service, once it is bound.
        self.onion = onion_service(config.onion, reactor)
        sections: dict[str, Any] = {}
        if self.onion is not None:
            onion = self.onion
            onion.setServiceParent(self)
            sections["onion"] = onion.report
        # --discovery: mDNS announcer, tailnet reporter.
        self.discovery = announcers(
            config.discovery, config.name, config.mdns_interface, config.tailscale_socket,
            self.whenOffered, reactor,
        )
        for announcer in self.discovery.values():
            announcer.setServiceParent(self)
        if self.discovery:
            found = self.discovery
            sections["discovery"] = lambda: {
                method: announcer.report() for method, announcer in found.items()
            }
        scopes = {}
        extra = {}
        if self.cluster is not None:
            member = self.cluster
            sections["cluster"] = member.report
            scopes["cluster"] = member.stats
            extra["degraded"] = member.degraded
        health = HealthSources(
            name=config.name,
            auth_required=config.require_auth,
            stats=self.router.summary,
            now_ms=self.router.now_ms,
            sections=sections,
            origins=origins.allows,
            **extra,
        )
        cors = self.bridge.cors if self.bridge is not None else None
        stats = stats_gate(self.admin_credential, authenticator)
        edge = config.admission
        self.listeners = [
            Listener(
                description,
                GatedFactory(
                    build_site(self.router, health, children, cors, stats, scopes, edge.header_timeout,
                               edge.body_timeout),
                    self.admission,
                ),
                reactor,
            )
            for description in config.listen
        ]
        for listener in self.listeners:
            listener.setServiceParent(self)
        # The built-in SSH server (--ssh); it forwards only to the listeners above.
        self.ssh_listener: Listener | None = None
        if config.ssh is not None:
            from wingman_gateway.transports.ssh import ssh_listener

            self.ssh_listener = ssh_listener(config, self.router, self._bound_addresses, reactor)
            self.ssh_listener.factory = GatedFactory(self.ssh_listener.factory, self.admission)
            self.ssh_listener.setServiceParent(self)
        if self.onion is not None:
            onion = self.onion
            self.whenOffered().addCallback(lambda offer: onion.serve(listener_target(offer)))
        limits = config.limits
        pinger = TimerService(limits.ping_interval, self.router.ping_all)
        # Check for silent nodes often enough to drop them close to the timeout.
        sweeper = TimerService(max(limits.ping_timeout / 10, 0.05), self.router.drop_silent)
        # Connections that never register (e.g. only send 'ping') are dropped.
        latecomers = TimerService(
            min(edge.register_timeout / 4, 1.0), lambda: drop_unregistered(
                self.router.connections, reactor.seconds(), edge.register_timeout,
                self.router.disconnect,
            ),
        )
        for timer in (pinger, sweeper, latecomers):
            timer.clock = reactor
            timer.setServiceParent(self)
        self.keyring_watcher: KeyRingWatcher | None = None
        if self.keyring is not None:
            # SIGHUP belongs to the whole service (see reload), not to the watcher.
            self.keyring_watcher = KeyRingWatcher(
                self.keyring, reactor, install_sighup=False,
                on_change=self.router.keys_changed, events=self.events,
            )
            self.keyring_watcher.setServiceParent(self)
        self._sighup_installed = False
        self._previous_sighup: Any = None
        # Under systemd (Type=notify): READY=1 once listening, watchdog pings, STOPPING=1.
        self.notifier = SystemdNotifier.from_environment(self.whenListening, reactor)
        if self.notifier is not None:
            self.notifier.setServiceParent(self)

    def _add_metrics(self, children: dict[bytes, Any]) -> None:
        """The metrics sink, the lag probe, ``/metrics`` on the listeners and
        on ``--metrics-listen`` (there without a credential)."""
        router, config = self.router, self.config
        bridge = self.bridge
        metrics = GatewayMetrics(
            GaugeSources(
                transports=lambda: [node.conn.transport_name for node in router.connections],
                nodes=router.rooms.node_count,
                rooms=router.rooms.room_count,
                bridge_sessions=lambda: len(bridge) if bridge is not None else 0,
                version=__version__,
                name=config.name,
            ),
            self.reactor,
        )
        self.events.subscribe(metrics.sink)
        metrics.lag.setServiceParent(self)
        children[b"metrics"] = metrics.resource(admin_gate(self.admin_credential))
        if config.metrics_listen is not None:
            root = Resource()
            root.putChild(b"metrics", metrics.resource())
            site = Site(root)
            site.noisy = False
            site.log = lambda request: None  # type: ignore[method-assign]  # a scrape every few seconds
            self.metrics_listener = Listener(config.metrics_listen, site, self.reactor)
            self.metrics_listener.setName(f"metrics {config.metrics_listen}")
            self.metrics_listener.announce = "wingman-gateway metrics on {endpoint} ({address})"
            self.metrics_listener.setServiceParent(self)
        self.metrics = metrics

    # -- what the gateway offers ------------------------------------------

    def _bound_addresses(self) -> list[Any]:
        return [listener.port.getHost() for listener in self.listeners if listener.port is not None]

    def whenListening(self) -> defer.Deferred[list[IListeningPort]]:
        """Fires once every listener is bound."""
        listeners = self.listeners + [
            extra for extra in (self.ssh_listener, self.metrics_listener) if extra is not None
        ]
        return defer.gatherResults([listener.listening for listener in listeners])

    def whenOffered(self) -> defer.Deferred[Offer]:
        """Fires with the ``Offer`` once every listener is bound."""
        return self.whenListening().addCallback(lambda _: self.offer())

    def offer(self) -> Offer:
        """What the gateway offers now (its bound listeners among it)."""
        config = self.config
        ssh = self.ssh_listener
        return Offer(
            name=config.name,
            version=__version__,
            auth_required=config.require_auth,
            listeners=tuple(
                Bound.of(listener.description, listener.port.getHost())
                for listener in self.listeners
                if listener.port is not None
            ),
            bridge=self.bridge is not None,
            ssh=Bound.of(ssh.description, ssh.port.getHost()) if ssh and ssh.port else None,
            ssh_fingerprint=getattr(ssh, "fingerprint", None),
            tags=config.discovery.tags,
            onion=self.onion.url if self.onion is not None else None,
            metrics=_bound(self.metrics_listener),
        )

    # -- lifecycle --------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        # What exists now (modules, the Router, listeners) lives as long as
        # the process: moved out of the collector's sight, it is not walked
        # again by every full collection. While 5,000 nodes connected, the
        # collector took 29% of the gateway's CPU without this, 12% with it.
        gc.freeze()
        # A connection makes a few hundred container objects, most of them
        # living as long as it does; at Python's default (a young collection
        # every 700 allocations) the collector walked them again and again
        # while nodes connect. At GC_YOUNG a burst of connections costs about
        # 10% less CPU per node (benchmarks/README.rst, storm); garbage
        # without cycles is freed at once all the same.
        gc.set_threshold(GC_YOUNG, *gc.get_threshold()[1:])
        if self.config.ports_file is not None:
            self.whenOffered().addCallback(self._write_ports_file)
        try:
            self._previous_sighup = signal.signal(signal.SIGHUP, self._on_sighup)
            self._sighup_installed = True
        except ValueError:  # not the main thread (embedded in a test or a program)
            log.warn("SIGHUP reload not available outside the main thread")

    def _on_sighup(self, signum: int, frame: Any) -> None:
        self.reactor.callFromThread(self.reload)  # out of signal context

    def _write_ports_file(self, offer: Offer) -> None:
        """--ports-file: every listener is bound; say where."""
        assert self.config.ports_file is not None
        try:
            portsfile.write(self.config.ports_file, portsfile.report(offer))
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
        if self.admin_credential is not None:
            self.admin_credential.reload()
        if self.audit is not None:
            self.audit.reopen()
        if self.notifier is not None:
            self.notifier.reloaded()

    def stopService(self) -> defer.Deferred[None]:
        """Close every client with 'going away', then stop listening."""
        if self.notifier is not None:
            self.notifier.stopping()  # at once, not after the wait for clients
        for announcer in self.discovery.values():
            announcer.stopService()  # mDNS goodbyes at once, too
        if self._sighup_installed:
            previous = self._previous_sighup
            signal.signal(signal.SIGHUP, signal.SIG_DFL if previous is None else previous)
            self._sighup_installed = False
        connections = list(self.router.connections)
        for node in connections:
            node.conn.close(CLOSE_GOING_AWAY, "gateway shutting down")
        waited: defer.Deferred[None] = defer.Deferred()
        if connections:
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
        if not self.router.connections:
            waited.callback(None)
            return
        self.reactor.callLater(0.05, self._wait_for_clients, waited)
