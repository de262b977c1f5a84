"""The two Redis connections a gateway holds: one for commands, one subscribed.

Built on txredisapi: its factories keep each connection up through
Twisted's ``ClientService`` (reconnecting with exponential backoff and
jitter) and speak the protocol; this module adds what the cluster needs:
one state (``connecting``, ``ok``, ``degraded``) with its reason, the
subscriptions made again on every new connection, and a callback when the
link comes up or goes down.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import txredisapi
from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.ssl import Certificate, optionsForClientTLS, platformTrust
from twisted.python.failure import Failure

from wingman_gateway.cluster.settings import ClusterSettings
from wingman_gateway.sockets import set_no_delay
from wingman_gateway.logs import get_logger

log = get_logger("wingman_gateway.cluster.link")

CONNECTING = "connecting"
OK = "ok"
DEGRADED = "degraded"

# Backoff between connection attempts (txredisapi's ClientService policy).
FIRST_RETRY = 0.25
LONGEST_RETRY = 2.0
# A command unanswered this long means the server hangs: the connection is
# dropped and made again. (A stopped server is noticed at once: its socket
# closes. A busy gateway reads its replies late, so this is generous.)
REPLY_TIMEOUT = 15.0
CONNECT_TIMEOUT = 3.0


class _Subscriber(txredisapi.SubscriberProtocol):
    def messageReceived(self, pattern: Any, channel: bytes, message: bytes) -> None:
        self.factory.link.received(channel, message)


class _Factory(txredisapi.RedisFactory):
    """One connection, kept up by txredisapi; tells the link what happens."""

    initialDelay = FIRST_RETRY
    maxDelay = LONGEST_RETRY

    def __init__(self, link: "RedisLink", role: str, settings: ClusterSettings) -> None:
        subscriber = role == "subscriber"
        super().__init__(
            None,
            None if subscriber else settings.db,
            1,
            isLazy=True,
            charset=None if subscriber else "utf-8",
            password=settings.password,
            replyTimeout=None if subscriber else REPLY_TIMEOUT,
            convertNumbers=False,
            username=settings.username,
        )
        if subscriber:
            self.protocol = _Subscriber
        self.link = link
        self.role = role
        # Nobody waits for the whole pool: the link follows each connection.
        self.deferred.addErrback(lambda _: None)

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        lost = protocol.connectionLost

        def connection_lost(reason: Failure) -> Any:
            self.link.attempt_failed(reason)  # why, while the link is not up (TLS, a reset)
            return lost(reason)

        protocol.connectionLost = connection_lost
        return protocol

    def addConnection(self, conn: Any) -> None:
        super().addConnection(conn)
        if conn in self.pool:
            # Small commands (a publish per message) must not wait for Nagle.
            set_no_delay(conn.transport)
            self.link.connected(self.role, conn)

    def delConnection(self, conn: Any) -> None:
        super().delConnection(conn)
        self.link.lost(self.role, conn)

    def stopTrying(self) -> Any:
        """txredisapi gives up after any failed AUTH or SELECT: decided in ``connectionError``."""
        return defer.succeed(None)

    def connectionError(self, why: str) -> None:
        super().connectionError(why)
        if why.endswith(("Lost connection", "Not connected")):
            return  # the connection broke during AUTH or SELECT: retried with backoff
        txredisapi.RedisFactory.stopTrying(self)  # refused (a wrong password): final
        self.link.refused(why)


class _Watched:
    """An endpoint that remembers why the last attempt failed (for /health)."""

    def __init__(self, endpoint: Any, link: "RedisLink") -> None:
        self.endpoint = endpoint
        self.link = link

    def connect(self, factory: Any) -> defer.Deferred[Any]:
        def failed(failure: Failure) -> Failure:
            self.link.attempt_failed(failure)
            return failure

        connecting: defer.Deferred[Any] = self.endpoint.connect(factory)
        return connecting.addErrback(failed)


class RedisLink:
    """Commands and subscriptions to the cluster's Redis, kept connected."""

    def __init__(
        self,
        settings: ClusterSettings,
        channels: Iterable[str],
        on_message: Callable[[bytes, bytes], None],
        on_up: Callable[[], None],
        on_down: Callable[[], None],
        reactor: Any,
    ) -> None:
        self.settings = settings
        self.channels = list(channels)
        self.on_message = on_message
        self.on_up = on_up
        self.on_down = on_down
        self.reactor = reactor
        self.state = CONNECTING
        self.reason: str | None = f"connecting to {settings.url}"
        self.commands: Any = None
        self.subscriber: Any = None
        self.up = False
        self.refusal: str | None = None
        self._subscribed = False
        self._factories: list[_Factory] = []
        # Channels subscribed to besides ``channels`` (rooms with members here),
        # each with the Deferred of its SUBSCRIBE on the current connection.
        self.rooms: dict[str, defer.Deferred[Any] | None] = {}

    def _endpoint(self) -> Any:
        settings = self.settings
        endpoint: Any = HostnameEndpoint(
            self.reactor, settings.host, settings.port, timeout=CONNECT_TIMEOUT
        )
        if settings.tls:
            if settings.ca_file is not None:
                with open(settings.ca_file, "rb") as handle:
                    trust: Any = Certificate.loadPEM(handle.read())
            else:
                trust = platformTrust()
            endpoint = wrapClientTLS(optionsForClientTLS(settings.host, trust), endpoint)
        return _Watched(endpoint, self)

    def start(self) -> None:
        endpoint = self._endpoint()
        roles = ("commands", "subscriber") if self.channels else ("commands",)
        self._factories = [_Factory(self, role, self.settings) for role in roles]
        for factory in self._factories:
            factory.startConnecting(endpoint)

    def stop(self) -> defer.Deferred[Any]:
        return defer.gatherResults(
            [factory.disconnect() for factory in self._factories], consumeErrors=True
        )

    # -- what the factories tell ----------------------------------------

    def connected(self, role: str, conn: Any) -> None:
        if role == "commands":
            self.commands = conn
            self._check()
            return
        self.subscriber = conn
        # One channel per SUBSCRIBE: txredisapi pairs each reply with one command.
        subscribing = defer.gatherResults([conn.subscribe(channel) for channel in self.channels])
        for channel in sorted(self.rooms):
            self._subscribe(conn, channel)

        def done(_: Any) -> None:
            if self.subscriber is conn:
                self._subscribed = True
                self._check()

        def failed(failure: Failure) -> None:
            log.debug("cluster: subscribing failed: {why}", why=failure.getErrorMessage())
            conn.transport.loseConnection()

        subscribing.addCallbacks(done, failed)

    def lost(self, role: str, conn: Any) -> None:
        if role == "commands" and self.commands is conn:
            self.commands = None
        elif role == "subscriber" and self.subscriber is conn:
            self.subscriber = None
            self._subscribed = False
            self.rooms = dict.fromkeys(self.rooms)
        else:
            return
        if self.up:
            self.up = False
            self.state = DEGRADED
            self.reason = f"lost the connection to {self.settings.url}; reconnecting"
            log.warn("cluster: {reason}", reason=self.reason, redis=self.settings.url)
            if role == "subscriber":
                # Redis also drops a subscriber that falls too far behind
                # (client-output-buffer-limit pubsub): what it held is lost.
                log.warn("cluster: messages sent to this gateway until it has subscribed again are lost")
            self.on_down()

    def refused(self, why: str) -> None:
        # Final: txredisapi stops retrying after a refused AUTH or SELECT.
        self.refusal = why
        self.reason = why
        log.error("cluster: {why}", why=why, redis=self.settings.url)

    def attempt_failed(self, failure: Failure) -> None:
        if self.up or self.refusal is not None:
            return
        if self.state == DEGRADED:
            self.reason = f"lost the connection to {self.settings.url}; reconnecting ({failure.getErrorMessage()})"
        else:
            self.reason = f"cannot reach {self.settings.url}: {failure.getErrorMessage()}"

    def received(self, channel: bytes, message: bytes) -> None:
        try:
            self.on_message(channel, message)
        except Exception:
            # One bad message must not cost the subscription.
            log.failure("cluster: a message from {channel} could not be handled", channel=channel)

    def _check(self) -> None:
        if self.up or self.commands is None or (self.channels and not self._subscribed):
            return
        self.up = True
        self.state = OK
        self.reason = None
        log.info("cluster: connected to {redis}", redis=self.settings.url)
        self.on_up()

    # -- room channels ----------------------------------------------------

    def subscribe(self, channel: str) -> defer.Deferred[Any] | None:
        """Subscribe to ``channel`` (again on every new connection); a Deferred
        that fires once Redis confirmed it, or None while not connected."""
        if channel not in self.rooms:
            self.rooms[channel] = None
            if self.subscriber is not None:
                self._subscribe(self.subscriber, channel)
        confirmed = self.rooms[channel]
        if confirmed is None:
            return None
        waiter: defer.Deferred[Any] = defer.Deferred()

        def done(result: Any) -> Any:
            waiter.callback(None)
            return result

        confirmed.addBoth(done)
        return waiter

    def unsubscribe(self, channel: str) -> None:
        if self.rooms.pop(channel, None) is not None and self.subscriber is not None:
            self.subscriber.unsubscribe(channel).addErrback(lambda _: None)

    def _subscribe(self, conn: Any, channel: str) -> None:
        subscribing = conn.subscribe(channel)
        subscribing.addErrback(lambda failure: log.debug(
            "cluster: subscribing to {channel} failed: {why}", channel=channel, why=failure.getErrorMessage()))
        self.rooms[channel] = subscribing

    # -- commands ---------------------------------------------------------

    def execute(self, *args: Any) -> defer.Deferred[Any] | None:
        """Send one command; None when there is no connection to send it on."""
        conn = self.commands
        if conn is None or not self.up:
            return None
        try:
            sent: defer.Deferred[Any] = conn.execute_command(*args)
            return sent
        except txredisapi.ConnectionError:
            return None
