"""Bridge sessions: an HTTP client as one ``IConnection`` of the Router.

A session is made by a ``register`` posted without a session secret and
lives until it unregisters, is closed by the Router (heartbeat, fatal
error, shutdown), or goes ``session_timeout`` without a reader (a poll or
an event stream). What the Router sends it goes to its ``DeliveryQueue``,
except the direct reply to a request being posted, which is captured for
that request's HTTP response.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from twisted.application.service import Service
from twisted.internet.interfaces import IDelayedCall
from zope.interface import Attribute, Interface, implementer

from wingman_gateway import errors
from wingman_gateway.transports.bridge.cors import CorsPolicy
from wingman_gateway.transports.bridge.options import BridgeOptions
from wingman_gateway.transports.bridge.queue import DeliveryQueue
from wingman_gateway.connection import CLOSE_GOING_AWAY, IConnection, Outbound, Reply
from wingman_gateway.envelope import encode
from wingman_gateway.logs import get_logger
from wingman_gateway.router import Router

log = get_logger("wingman_gateway.bridge")

TIMEOUT_REASON = "bridge session timeout"


class IReader(Interface):
    """A request that takes a session's queued messages (a poll or an event stream)."""

    session = Attribute("The BridgeSession read from.")

    def wake() -> None:
        """New messages are queued."""

    def replaced() -> None:
        """A newer reader took over this session."""

    def end(status: int, reason: str) -> None:
        """The session is over; deliver what is queued and say why."""


def _key(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).digest()


@implementer(IConnection)
class BridgeSession:
    """One HTTP bridge client, registered or about to be."""

    transport_name = "http"

    def __init__(self, bridge: "Bridge", peer: str) -> None:
        self.bridge = bridge
        self.peer = peer
        options = bridge.options
        self.queue = DeliveryQueue(options.queue_messages, options.queue_bytes, self._loss_notice,
                                   self._loss_noticed)
        self.reader: IReader | None = None
        self.ended: tuple[int, str] | None = None
        self.key: bytes | None = None  # digest of the secret, once admitted
        self._replies: list[Reply] | None = None
        self._expiry: IDelayedCall | None = None
        self.node = bridge.router.connect(self)

    def __repr__(self) -> str:
        return f"<BridgeSession node={self.node.node_id} peer={self.peer}>"

    # -- IConnection ---------------------------------------------------

    def send(self, message: Outbound) -> None:
        if self.ended is not None:
            return
        if self._replies is not None and isinstance(message, Reply):
            self._replies.append(message)
            return
        had_loss = self.queue.lost
        if not self.queue.push(message.data):
            self.bridge.router.events.emit("bridge_dropped", count=1)
            if not had_loss:
                log.warn(
                    "bridge queue of node {nodeId} is full: dropping messages",
                    nodeId=self.node.node_id,
                    peer=self.peer,
                    queued=len(self.queue),
                    queuedBytes=self.queue.bytes,
                )
        if self.reader is not None:
            self.reader.wake()

    def close(self, status: int, reason: str) -> None:
        if self.ended is not None:
            return
        self.ended = (status, reason)
        self._cancel_expiry()
        self.bridge.forget(self)
        reader, self.reader = self.reader, None
        if reader is not None:
            reader.end(status, reason)
        # The Router calls disconnect itself right after closing; this covers
        # a close it does not follow (shutdown), as a WebSocket's onClose does.
        self.bridge.clock.callLater(0, self.bridge.router.disconnect, self.node, reason)

    # -- from the HTTP side ---------------------------------------------

    def receive(self, data: bytes) -> list[Reply]:
        """Route one posted envelope; the replies the Router gave it directly."""
        replies: list[Reply] = []
        self._replies = replies
        try:
            self.bridge.router.receive(self.node, data)
        finally:
            self._replies = None
        return replies

    def attach(self, reader: IReader) -> None:
        """``reader`` takes this session's messages from now on."""
        old, self.reader = self.reader, reader
        self._cancel_expiry()
        if old is not None and old is not reader:
            old.replaced()

    def detach(self, reader: IReader) -> None:
        """``reader`` is done; the session times out unless another comes."""
        if self.reader is reader:
            self.reader = None
            self.schedule_expiry()

    def confirm(self, seq: int) -> None:
        """The client has everything up to ``seq``; a pending loss notice may now be queued."""
        before = self.queue.last_seq
        self.queue.confirm(seq)
        if self.queue.last_seq != before and self.reader is not None:
            self.reader.wake()

    def touch(self) -> None:
        """A request from the client: it is alive (the Router's heartbeat)."""
        self.node.last_seen = self.bridge.clock.seconds()

    # -- expiry -----------------------------------------------------------

    def schedule_expiry(self) -> None:
        if self.ended is not None or self.reader is not None:
            return
        self._cancel_expiry()
        self._expiry = self.bridge.clock.callLater(
            self.bridge.options.session_timeout, self.bridge.expire, self
        )

    def _cancel_expiry(self) -> None:
        expiry, self._expiry = self._expiry, None
        if expiry is not None and expiry.active():
            expiry.cancel()

    def _loss_noticed(self, lost: int) -> None:
        """The loss notice is queued: an error envelope sent, like the Router's own."""
        self.bridge.router.events.emit("refused", code=errors.MESSAGES_LOST)

    def _loss_notice(self, lost: int) -> bytes:
        queue = self.queue
        return encode(
            {
                "type": "error",
                "payload": {
                    "code": errors.MESSAGES_LOST,
                    "message": (
                        f"{lost} message{'s' if lost != 1 else ''} to this node "
                        f"{'were' if lost != 1 else 'was'} dropped: its bridge queue was full "
                        f"({queue.max_messages} messages or {queue.max_bytes} bytes unconfirmed)"
                    ),
                    "details": {
                        "lost": lost,
                        "maxMessages": queue.max_messages,
                        "maxBytes": queue.max_bytes,
                    },
                },
                "timestamp": self.bridge.router.now_ms(),
            }
        )


class Bridge(Service):
    """The bridge sessions of one gateway, found by their secrets."""

    def __init__(self, router: Router, options: BridgeOptions, clock: Any) -> None:
        self.router = router
        self.options = options
        self.clock = clock
        self.cors = CorsPolicy(frozenset(options.cors_origins))
        self._sessions: dict[bytes, BridgeSession] = {}
        self.setName("http bridge")

    def __len__(self) -> int:
        return len(self._sessions)

    def open(self, peer: str) -> BridgeSession:
        """A new connection for a request posted without a session."""
        return BridgeSession(self, peer)

    def admit(self, session: BridgeSession) -> str:
        """``session`` registered: its secret (never the public node id)."""
        secret = secrets.token_urlsafe(32)
        session.key = _key(secret)
        self._sessions[session.key] = session
        session.schedule_expiry()
        self.router.events.emit("bridge_session")
        return secret

    def discard(self, session: BridgeSession) -> None:
        """A connection that did not become a session (no register)."""
        if session.ended is None:
            session.ended = (CLOSE_GOING_AWAY, "no session")
            self.router.disconnect(session.node, "no session")

    def find(self, secret: str) -> BridgeSession | None:
        """The live session ``secret`` names, compared in constant time."""
        key = _key(secret)
        session = self._sessions.get(key)
        if session is None or session.key is None or not hmac.compare_digest(session.key, key):
            return None
        return session

    def forget(self, session: BridgeSession) -> None:
        if session.key is not None and self._sessions.get(session.key) is session:
            del self._sessions[session.key]

    def expire(self, session: BridgeSession) -> None:
        """No reader for ``session_timeout``: the node leaves like a lost connection."""
        timeout = self.options.session_timeout
        log.info(
            "bridge session of node {nodeId} timed out: no poll or stream for {timeout:g} s",
            nodeId=session.node.node_id,
            timeout=timeout,
        )
        session.close(CLOSE_GOING_AWAY, f"{TIMEOUT_REASON}: no poll or stream for {timeout:g} s")
        self.router.disconnect(session.node, TIMEOUT_REASON)

    def stopService(self) -> Any:
        for session in list(self._sessions.values()):
            session.close(CLOSE_GOING_AWAY, "gateway shutting down")
        return super().stopService()
