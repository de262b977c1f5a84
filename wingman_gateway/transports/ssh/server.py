"""The built-in SSH server, assembled from Conch's own classes.

Public keys only (``SSHPublicKeyChecker`` over the authorized_keys file), a
session channel that runs the ``wingman`` subsystem, and ``direct-tcpip``
forwarding to the gateway's own listeners. Everything else -- remote
forwarding, shells, commands, other channel types -- is refused and logged.
"""

from __future__ import annotations

import struct
from typing import Any, Callable, Iterable

from twisted.conch.avatar import ConchUser
from twisted.conch.error import IgnoreAuthentication, ValidPublicKey
from twisted.conch.interfaces import IConchUser
from twisted.conch.ssh import _kex, common, connection, forwarding, keys, transport, userauth
from twisted.conch.ssh.factory import SSHFactory
from twisted.cred.portal import IRealm, Portal
from twisted.internet import defer
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.python.failure import Failure
from zope.interface import implementer

from wingman_gateway.addresses import address_text
from wingman_gateway.sockets import set_no_delay
from wingman_gateway.logs import get_logger
from wingman_gateway.router import Router
from wingman_gateway.transports.ssh.forwarding import ForwardTargets, GatewayForwardingChannel
from wingman_gateway.transports.ssh.keys import AuthorizedKeysFile, KeyFileChecker, SSHIdentity
from wingman_gateway.transports.ssh.subsystem import SUBSYSTEM, GatewaySession, LineConnection

log = get_logger("wingman_gateway.ssh")
# Conch's own events pass the gateway's --log-level filter too.
CONCH_LOG = get_logger("wingman_gateway.ssh.conch")

# Seconds from TCP connect to a successful login (OpenSSH's LoginGraceTime is 120).
LOGIN_TIMEOUT = 60.0
# Failed logins before the connection is dropped (OpenSSH's MaxAuthTries).
MAX_AUTH_TRIES = 6
# Open channels (nodes, forwards) on one SSH connection.
MAX_CHANNELS = 64
FORWARD_REFUSED = "forwarding is allowed only to the gateway's own listening addresses"
FORWARD_DISABLED = "port forwarding is disabled for this key"


class GatewayServerTransport(transport.SSHServerTransport):
    """Conch's server transport with a login deadline and TCP_NODELAY."""

    _log = CONCH_LOG

    factory: GatewaySSHFactory
    _deadline: Any = None

    def connectionMade(self) -> None:
        set_no_delay(self.transport)
        self._deadline = self.factory.clock.callLater(LOGIN_TIMEOUT, self._too_slow)
        super().connectionMade()

    def _too_slow(self) -> None:
        self._deadline = None
        peer = self.transport.getPeer()  # type: ignore[union-attr]  # connected while the timer runs
        log.info("SSH login timed out for {peer}", peer=address_text(peer))
        self.sendDisconnect(transport.DISCONNECT_NO_MORE_AUTH_METHODS_AVAILABLE, b"login timeout")

    def setService(self, service: Any) -> None:
        super().setService(service)
        if isinstance(service, connection.SSHConnection):
            self._cancel_deadline()  # logged in

    def connectionLost(self, reason: Any = None) -> None:
        self._cancel_deadline()
        super().connectionLost(reason)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None


class GatewayUserAuth(userauth.SSHUserAuthServer):
    """Public-key login, timed on the injected clock (the transport bounds the whole login)."""

    _log = CONCH_LOG

    attemptsBeforeDisconnect = MAX_AUTH_TRIES
    loginTimeout = LOGIN_TIMEOUT  # type: ignore[assignment]  # Conch reads it as seconds, a float works

    def serviceStarted(self) -> None:
        self.clock = self.transport.factory.clock  # type: ignore[union-attr]  # a service runs on its transport
        super().serviceStarted()

    def auth_publickey(self, packet: bytes) -> defer.Deferred[Any]:
        d = super().auth_publickey(packet)
        d.addCallbacks(self._logged_in, self._refused, errbackArgs=(packet,))
        return d

    def _factory(self) -> GatewaySSHFactory:
        assert self.transport is not None  # a login runs on its connection
        factory: GatewaySSHFactory = self.transport.factory
        return factory

    def _peer(self) -> str:
        assert self.transport is not None
        return address_text(self.transport.transport.getPeer())  # type: ignore[union-attr]  # a login runs on a connection

    def _logged_in(self, result: Any) -> Any:
        identity = result[1].identity
        entry = identity.entry
        log.info("SSH login: {login} with key {key} ({comment})", login=identity.login,
                 key=entry.fingerprint, comment=entry.comment or "no comment", peer=self._peer())
        self._factory().router.events.emit(
            "ssh_login", peer=self._peer(), login=identity.login,
            fingerprint=entry.fingerprint, comment=entry.comment,
        )
        return result

    def _refused(self, failure: Failure, packet: bytes) -> Failure:
        # A key query ("would this key do?"), not a login attempt: Conch
        # answers an acceptable key with PK_OK and fails it as ignored.
        if failure.check(ValidPublicKey, IgnoreAuthentication):
            return failure
        try:
            blob = common.getNS(packet[1:], 2)[1]
        except Exception:
            blob = b""
        factory = self._factory()
        login, why, offered = factory.checker.refusal(self.user or b"", blob)
        log.info("SSH login refused for {login!r}: {why} ({key})", login=login, why=why,
                 key=offered, peer=self._peer())
        factory.router.events.emit(
            "ssh_refused", peer=self._peer(), login=login, fingerprint=offered, reason=why
        )
        return failure


class GatewayConnection(connection.SSHConnection):
    """Refuses channels the avatar will not open without Conch logging a traceback."""

    _log = CONCH_LOG

    def ssh_CHANNEL_OPEN(self, packet: bytes) -> None:
        channel_type, rest = common.getNS(packet)
        sender = struct.unpack(">L", rest[:4])[0]
        user: Any = self.transport.avatar  # type: ignore[union-attr]  # logged in: our GatewayAvatar
        refusal = user.refusal(channel_type, rest[12:], len(self.channels))
        if refusal is None:
            super().ssh_CHANNEL_OPEN(packet)
            return
        code, text = refusal
        self.transport.sendPacket(  # type: ignore[union-attr]  # channels open on a connected transport
            connection.MSG_CHANNEL_OPEN_FAILURE,
            struct.pack(">2L", sender, code) + common.NS(text.encode("utf-8")) + common.NS(b""),
        )


class GatewayAvatar(ConchUser):
    """A logged-in SSH user: may run the subsystem and forward to the gateway."""

    def __init__(self, identity: SSHIdentity, server: GatewaySSHFactory) -> None:
        super().__init__()
        self.identity = identity
        self.router = server.router
        self.clock = server.clock
        self.reactor = server.reactor
        self.targets = server.targets
        self.channelLookup[b"session"] = GatewaySession
        self.channelLookup[b"direct-tcpip"] = self._open_forward
        self.subsystemLookup[SUBSYSTEM] = lambda data, avatar: LineConnection(self)

    _peer: str | None = None

    def describe_peer(self) -> str:
        """``login@host:port`` for logs and /stats."""
        if self._peer is None:
            conn = getattr(self, "_conn", None)
            if conn is None:
                return f"{self.identity.login}@?"
            self._peer = f"{self.identity.login}@{address_text(conn.transport.transport.getPeer())}"
        return self._peer

    def refusal(self, channel_type: bytes, data: bytes, open_channels: int) -> tuple[int, str] | None:
        """Why a channel may not open, or None; forwarding refusals are logged."""
        if open_channels >= MAX_CHANNELS:
            return connection.OPEN_RESOURCE_SHORTAGE, f"at most {MAX_CHANNELS} channels per connection"
        if channel_type == b"session":
            return None
        if channel_type != b"direct-tcpip":
            shown = channel_type.decode("ascii", "replace")[:40]
            log.info("SSH {kind} channel refused for {peer}", kind=shown, peer=self.describe_peer())
            return connection.OPEN_UNKNOWN_CHANNEL_TYPE, f"channel type {shown!r} is not offered"
        try:
            (host, port), _origin = forwarding.unpackOpen_direct_tcpip(data)
        except (ValueError, struct.error, UnicodeDecodeError):
            return connection.OPEN_CONNECT_FAILED, "malformed forwarding request"
        target = f"{host[:80]}:{port}"
        if not self.identity.entry.forwarding:
            why = FORWARD_DISABLED
        elif self.targets.resolve(host, port) is None:
            why = FORWARD_REFUSED
        else:
            return None
        log.warn("SSH forwarding to {target} refused for {peer} (key {key}): {why}",
                 target=target, peer=self.describe_peer(), key=self.identity.entry.fingerprint,
                 why=why)
        self.forward_refused(target, why)
        return connection.OPEN_ADMINISTRATIVELY_PROHIBITED, why

    def forward_refused(self, target: str, why: str) -> None:
        """Report a refused forward (local or remote) to the event sinks."""
        self.router.events.emit(
            "forward_refused", peer=self.describe_peer(), login=self.identity.login,
            fingerprint=self.identity.entry.fingerprint, target=target, reason=why,
        )

    def _open_forward(self, remoteWindow: int, remoteMaxPacket: int, data: bytes,
                      avatar: Any) -> GatewayForwardingChannel:
        (host, port), _origin = forwarding.unpackOpen_direct_tcpip(data)
        address = self.targets.resolve(host, port)
        assert address is not None  # refusal() said yes a moment ago
        log.info("SSH forwarding for {peer} to {target}", peer=self.describe_peer(),
                 target=f"{address}:{port}")
        return GatewayForwardingChannel(
            (address, port), self.reactor, remoteWindow=remoteWindow,
            remoteMaxPacket=remoteMaxPacket, avatar=avatar,
        )

    def gotGlobalRequest(self, requestType: bytes, data: bytes) -> int:
        if requestType in (b"tcpip-forward", b"streamlocal-forward@openssh.com"):
            kind = requestType.decode("ascii")
            log.warn("SSH remote forwarding ({kind}) refused for {peer}: the gateway only "
                     "forwards to its own listeners", kind=kind, peer=self.describe_peer())
            self.forward_refused(f"remote ({kind})", "the gateway only forwards to its own listeners")
        return 0


@implementer(IRealm)
class GatewayRealm:
    def __init__(self, server: GatewaySSHFactory) -> None:
        self.server = server

    def requestAvatar(self, avatarId: Any, mind: Any, *interfaces: Any) -> Any:  # an SSHIdentity
        if IConchUser not in interfaces:
            raise NotImplementedError("only SSH users")
        return IConchUser, GatewayAvatar(avatarId, self.server), lambda: None


class GatewaySSHFactory(SSHFactory):
    """Builds SSH server connections bound to the one Router."""

    protocol = GatewayServerTransport
    services = {b"ssh-userauth": GatewayUserAuth, b"ssh-connection": GatewayConnection}
    # Group exchange offers the 2048-bit MODP group (RFC 3526), so no moduli file is needed.
    primes = {2048: [_kex.getDHGeneratorAndPrime(b"diffie-hellman-group14-sha1")]}

    def __init__(self, router: Router, host_key: keys.Key, keyfile: AuthorizedKeysFile,
                 listening: Callable[[], Iterable[IAddress]], reactor: Any,
                 clock: IReactorTime | None = None) -> None:
        self.router = router
        self.reactor = reactor
        self.clock = clock or reactor
        self.keyfile = keyfile
        self.targets = ForwardTargets(listening)
        self.privateKeys = {host_key.sshType(): host_key}
        self.publicKeys = {host_key.sshType(): host_key.public()}
        self.checker = KeyFileChecker(keyfile)
        self.portal = Portal(GatewayRealm(self), [self.checker])
        self.noisy = False
