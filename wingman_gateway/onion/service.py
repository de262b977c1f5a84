"""Publishing the gateway as a v3 onion service, and keeping it published.

The service is added with ``Flags=Detach``: it belongs to tor, not to one
control connection, so it can be seen (``GETINFO onions/detached``) and
removed by any controller, and it is removed explicitly (``DEL_ONION``)
when the gateway stops. When the control connection drops (tor restarted,
or the launched tor died) the service connects again with backoff (at most
``RECONNECT_MAX`` seconds between attempts) and adds the service again.

``ADD_ONION`` is sent through txtorcon's ``TorControlProtocol.queue_command``
rather than ``txtorcon.create_onion_service``/``Tor.create_onion_service``:
those wait until tor has uploaded the descriptor, which needs the network
(and never happens while tor is offline), and they would not give us a
detached service that outlives one control connection.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.internet.endpoints import UNIXClientEndpoint, clientFromString
from txtorcon import build_tor_connection

from wingman_gateway.client.backoff import Backoff
from wingman_gateway.logs import get_logger
from wingman_gateway.onion.clientauth import load_client_keys
from wingman_gateway.onion.keys import OnionKey, load_key
from wingman_gateway.onion.launch import TorProcess
from wingman_gateway.onion.settings import OnionSettings

log = get_logger("wingman_gateway.onion.service")

RECONNECT_MIN = 0.5
RECONNECT_MAX = 10.0  # so a restarted tor has the service back well within 30 s
COMMAND_TIMEOUT = 10.0
LAUNCH_WAIT = 30.0  # how long a launched tor may take to open its control socket
LAUNCH_POLL = 0.2


@attrs.frozen
class Target:
    """The local listener the onion service forwards to."""

    host: str
    port: int
    secure: bool = False

    @property
    def virtual_port(self) -> int:
        return 443 if self.secure else 80

    def port_spec(self) -> str:
        """``ADD_ONION``'s ``Port=VIRTPORT,TARGET``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.virtual_port},{host}:{self.port}"


class OnionService(Service):
    """Publishes one listener as ``ws://ADDRESS.onion/ws`` while the gateway runs."""

    def __init__(self, settings: OnionSettings, reactor: Any) -> None:
        self.settings = settings
        self.reactor = reactor
        self.key: OnionKey = load_key(settings.key_path)
        self.client_keys: tuple[str, ...] = (
            load_client_keys(settings.client_auth) if settings.client_auth else ()
        )
        self.tor: TorProcess | None = None
        if settings.control is None:
            self.tor = TorProcess(reactor, settings.data_directory, settings.tor_config)
            self.tor.find_binary()  # no tor at all stops startup
        else:
            try:
                clientFromString(reactor, settings.control)  # a bad endpoint stops startup
            except (ValueError, KeyError, TypeError) as error:
                raise ValueError(f"torControl: bad endpoint {settings.control!r}: {error}")
        self.target: Target | None = None
        self.state = "starting"
        self.backoff = Backoff(RECONNECT_MIN, RECONNECT_MAX)
        self._protocol: Any = None
        self._published = False
        self._waiting: defer.Deferred[Any] | None = None
        self._loop: defer.Deferred[None] | None = None
        self.setName("onion service")

    @property
    def address(self) -> str:
        return f"{self.key.address}.onion"

    @property
    def url(self) -> str:
        secure = self.target is not None and self.target.secure
        return f"{'wss' if secure else 'ws'}://{self.address}/ws"

    def report(self) -> dict[str, Any]:
        """For /health."""
        report: dict[str, Any] = {
            "state": self.state, "url": self.url, "address": self.address,
            "tor": self.settings.control or "launched", "clientAuth": len(self.client_keys),
        }
        if self.target is not None:
            report["target"] = self.target.port_spec().split(",", 1)[1]
        return report

    def serve(self, target: Target | None) -> None:
        """Start publishing ``target`` (called once the listener is bound)."""
        if target is None:
            self.state = "idle: no TCP listener to publish"
            log.warn("onion: {state}", state=self.state)
            return
        self.target = target
        log.info("onion: serving {url} (to {target}, via {tor})", url=self.url,
                 target=target.port_spec(), tor=self.settings.control or "a tor of its own")
        if self.running and self._loop is None:
            self._loop = defer.ensureDeferred(self._keep())

    def startService(self) -> None:
        super().startService()
        if self.target is not None and self._loop is None:
            self._loop = defer.ensureDeferred(self._keep())

    # -- keeping it published ---------------------------------------------

    async def _wait(self, waiting: defer.Deferred[Any]) -> Any:
        """Await ``waiting``; stopping the service cancels it."""
        self._waiting = waiting
        try:
            return await waiting
        finally:
            self._waiting = None

    async def _keep(self) -> None:
        attempt, last_problem = 0, None
        while self.running:
            try:
                protocol = await self._connect()
                self._protocol = protocol
                await self._publish(protocol)
            except Exception as error:  # tor not there (yet), refused, timed out...
                problem = str(error) or type(error).__name__
                if self._protocol is not None:
                    self._protocol.transport.loseConnection()
                    self._protocol = None
                if not self.running:
                    return
                self.state = f"waiting for tor: {problem}"
                if problem != last_problem:
                    log.warn("onion: cannot publish the service yet: {problem}", problem=problem)
                last_problem = problem
            else:
                attempt, last_problem = 0, None
                self.state = "published"
                log.info("onion: published {url}", url=self.url)
                # Fires (with TorDisconnectError) when tor goes away, or when stopping closes it.
                gone = protocol.when_disconnected()
                gone.addErrback(lambda _: None)
                await gone
                self._protocol, self._published = None, False
                if not self.running:
                    return
                self.state = "waiting for tor: lost the control connection"
                log.warn("onion: lost the connection to tor; publishing again when it is back")
            attempt += 1
            try:
                await self._wait(task.deferLater(self.reactor, self.backoff.delay(attempt), lambda: None))
            except defer.CancelledError:
                return

    async def _connect(self) -> Any:
        """An authenticated TorControlProtocol (cookie or no authentication)."""
        if self.tor is None:
            endpoint = clientFromString(self.reactor, self.settings.control)
            return await self._wait(build_tor_connection(endpoint, build_state=False))
        self.tor.start()
        deadline = self.reactor.seconds() + LAUNCH_WAIT
        while True:
            if not self.tor.running:
                raise RuntimeError("the launched tor exited: " + " | ".join(self.tor.last_lines))
            if self.tor.control_socket.exists():
                endpoint = UNIXClientEndpoint(self.reactor, str(self.tor.control_socket))
                try:
                    protocol = await self._wait(build_tor_connection(endpoint, build_state=False))
                except defer.CancelledError:
                    raise
                except Exception:
                    if self.reactor.seconds() > deadline:
                        raise
                else:
                    # Tor exits when this control connection closes, too.
                    await self._command(protocol, "TAKEOWNERSHIP")
                    return protocol
            if self.reactor.seconds() > deadline:
                raise RuntimeError(f"the launched tor opened no control socket within {LAUNCH_WAIT:g} s")
            await self._wait(task.deferLater(self.reactor, LAUNCH_POLL, lambda: None))

    async def _command(self, protocol: Any, command: str) -> str:
        sent = protocol.queue_command(command)
        sent.addTimeout(COMMAND_TIMEOUT, self.reactor)
        return str(await self._wait(sent))

    async def _publish(self, protocol: Any) -> None:
        assert self.target is not None
        address = self.key.address
        detached = await self._command(protocol, "GETINFO onions/detached")
        if address in detached:
            # Left by a gateway that did not stop cleanly (or pointing elsewhere): replace it.
            log.info("onion: replacing the service {address}.onion already in tor", address=address)
            await self._command(protocol, f"DEL_ONION {address}")
        flags = "Detach,V3Auth" if self.client_keys else "Detach"
        words = [f"ADD_ONION {self.key.text()}", f"Flags={flags}", f"Port={self.target.port_spec()}"]
        words += [f"ClientAuthV3={key}" for key in self.client_keys]
        answer = await self._command(protocol, " ".join(words))
        if f"ServiceID={address}" not in answer:
            raise RuntimeError(f"tor answered ADD_ONION with {answer!r}")
        self._published = True

    # -- stopping ---------------------------------------------------------

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        return defer.ensureDeferred(self._withdraw())

    async def _withdraw(self) -> None:
        if self._waiting is not None and not self._waiting.called:
            self._waiting.cancel()
        protocol = self._protocol
        if protocol is not None and self._published:
            try:
                await self._command(protocol, f"DEL_ONION {self.key.address}")
                log.info("onion: removed {address} from tor", address=self.address)
            except Exception as error:
                log.warn("onion: could not remove the service from tor: {error}", error=str(error))
        self._published = False
        if protocol is not None:
            protocol.transport.loseConnection()
        if self._loop is not None:
            await self._loop
        if self.tor is not None:
            await self.tor.stop()
        self.state = "stopped"
