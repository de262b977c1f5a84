"""A listener: one endpoint string served by one factory, as a Service.

Binding fails startup loudly (``ListenError``); endpoints that bind later
(systemd, onion) report through ``listening``.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure

from wingman_gateway.addresses import address_text
from wingman_gateway.checks import ConfigError
from wingman_gateway.logs import get_logger

log = get_logger("wingman_gateway.service")


class ListenError(Exception):
    """A listener could not bind.

    An ``Exception`` (not ``SystemExit``) so that a daemonizing twistd
    reports it to its parent and removes the pid file; the reason is also
    logged as a critical event.
    """


class Listener(Service):
    """One endpoint-string listener; binding fails startup loudly."""

    announce = "wingman-gateway listening on {endpoint} ({address})"

    def __init__(self, description: str, factory: Factory | Any, reactor: Any) -> None:
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
            stopped = port.stopListening()
            return stopped if isinstance(stopped, defer.Deferred) else defer.succeed(None)
        return None
