"""The Router: the one shared object every transport hands envelopes to.

It decides what may happen (validation, auth, limits, rate limits) and
answers through ``IConnection``; where nodes and rooms live and how a
message reaches them is the rooms seam's (``rooms.IRooms``). It never
imports a transport.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from twisted.internet.interfaces import IReactorTime
from wingman_gateway.logs import get_logger

from wingman_gateway import errors, fields
from wingman_gateway.admission import Admission
from wingman_gateway.auth import AuthError, Authenticator, Grant
from wingman_gateway.connection import (
    CLOSE_NORMAL,
    CLOSE_POLICY,
    CLOSE_TOO_BIG,
    CLOSE_TRY_AGAIN,
    SLOW_CONSUMER,
    IConnection,
    Outbound,
    Reply,
)
from wingman_gateway.envelope import Envelope, decode, encode, splice
from wingman_gateway.errors import GatewayError
from wingman_gateway.events import Events
from wingman_gateway.history import Published
from wingman_gateway.idempotency import SentKeys, key_of
from wingman_gateway.limits import Limits
from wingman_gateway.metering import Meters
from wingman_gateway.ratelimit import source_of
from wingman_gateway.roomrequests import RoomRequests
from wingman_gateway.sendrequests import SendRequests
from wingman_gateway.rooms import IRooms, LocalRooms
from wingman_gateway.state import Node
from wingman_gateway.turnlog import TurnLog

log = get_logger("wingman_gateway.router")

# Messages up to this size are decoded before the rate check, which then
# knows a heartbeat from a request and can echo the messageId; larger ones
# are metered before any decoding.
PEEK_BYTES = 1024
HEARTBEAT_TIMEOUT = "heartbeat timeout"

# How a fatal error closes the connection.
_CLOSE_FOR = {
    errors.AUTH_FAILED: CLOSE_POLICY,
    errors.MAX_NODES_REACHED: CLOSE_TRY_AGAIN,
    errors.PAYLOAD_TOO_LARGE: CLOSE_TOO_BIG,
}


class Router(RoomRequests, SendRequests):
    """Routes envelopes between connected nodes and rooms."""

    def __init__(
        self,
        clock: IReactorTime,
        limits: Limits | None = None,
        authenticator: Authenticator | None = None,
        gateway_name: str = "wingman-gateway",
        rooms: IRooms | None = None,
        admission: Admission | None = None,
        sent_keys: SentKeys | None = None,
        events: Events | None = None,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.clock = clock
        self.limits = limits or Limits()
        self.authenticator = authenticator or Authenticator(required=False)
        self.gateway_name = gateway_name
        # What happens here is told to the sinks (metrics, audit) through ``events``;
        # ``timer`` measures how long an envelope takes (not the reactor's clock).
        self.events = events if events is not None else Events()
        self.timer = timer
        self.rooms: IRooms = rooms if rooms is not None else LocalRooms(clock, events=self.events)
        self.admission = admission  # per-source caps on nodes (None: none, as in unit tests)
        self.sent_keys = sent_keys if sent_keys is not None else SentKeys(clock)
        # Every open connection, registered or not (heartbeat, shutdown).
        self.connections: set[Node] = set()
        # "node ... registered": one log event per reactor turn, however many register in it.
        self.arrivals = TurnLog(clock, log, "node {nodeId} ({name}) registered over {transport} from {peer}",
                                "{count} nodes registered: {nodes}", "{nodeId} ({name}) over {transport} from {peer}",
                                "registered")
        self.started_at = clock.seconds()
        self.messages_processed = 0
        self.meters = Meters(self.limits)
        self._handlers: dict[str, Callable[[Node, Envelope], None]] = {
            "register": self._register,
            "unregister": self._unregister,
            "join_group": self._join_group,
            "leave_group": self._leave_group,
            "broadcast": self._broadcast,
            "direct": self._direct,
            "ping": self._ping,
            "pong": self._pong,
        }

    # -- what transports call -------------------------------------------

    def connect(self, conn: IConnection, grant: Grant | None = None) -> Node:
        """A transport has a new client connection.

        ``grant`` is a credential the transport already verified (an SSH
        key); such a connection registers without a token.
        """
        now = self.clock.seconds()
        node = Node(conn=conn, send=conn.send, connected_at=now, last_seen=now,
                    source=source_of(conn.peer), budget=None, heartbeat_budget=None)
        self.meters.attach(node, now)
        node.grant = grant
        self.connections.add(node)
        return node

    def receive(self, node: Node, data: bytes | str) -> None:
        """One envelope arrived on ``node``'s connection."""
        if node.closed:
            return
        started = self.timer()
        now = self.clock.seconds()
        node.last_seen = now
        envelope: Envelope | None = None
        label = "invalid"  # the envelope's type for the metrics, once it is known
        try:
            if len(data) > self.payload_limit(node):
                raise self.too_large(len(data), node)
            peeked: GatewayError | None = None
            if len(data) <= PEEK_BYTES:
                try:
                    envelope = decode(data, self.limits.max_depth)
                except GatewayError as error:
                    peeked = error
            if not self.meters.admit(node, envelope.type if envelope is not None else None, data, now):
                return
            if peeked is not None:
                raise peeked
            if envelope is None:
                envelope = decode(data, self.limits.max_depth)
            handler = self._handlers.get(envelope.type)
            if handler is None:
                label = "unknown"
                raise GatewayError(
                    errors.UNKNOWN_MESSAGE_TYPE, f"unknown message type {envelope.type[:40]!r}"
                )
            label = envelope.type
            self.messages_processed += 1
            handler(node, envelope)
        except GatewayError as error:
            message_id = envelope.message_id if envelope is not None else error.message_id
            self.refuse(node, error, message_id)
        self.events.emit("received", label, len(data), self.timer() - started)

    def disconnect(self, node: Node, reason: str = "disconnected") -> None:
        """The connection is gone: the node leaves its rooms at once."""
        if node.closed:
            return
        node.closed = True
        self.connections.discard(node)
        if reason == SLOW_CONSUMER or reason == HEARTBEAT_TIMEOUT:
            self.events.emit("dropped", transport=node.conn.transport_name, reason=reason)
        if node.expiry is not None and node.expiry.active():
            node.expiry.cancel()
        self.meters.detach(node, self.clock.seconds())
        if node.node_id is not None:
            if self.admission is not None:
                self.admission.node_left(node.source)
            self.rooms.remove_node(node, reason)
            log.info(
                "node {nodeId} ({name}) left: {reason}",
                nodeId=node.node_id,
                name=node.name,
                reason=reason,
                transport=node.conn.transport_name,
            )

    def refuse(self, node: Node, error: GatewayError, message_id: Any = None) -> None:
        """Answer with an error envelope; close too if the error is fatal."""
        reply: dict[str, Any] = {"type": "error", "payload": error.payload()}
        if message_id is not None:
            reply["messageId"] = message_id
        reply["timestamp"] = self.now_ms()
        self._reply(node, reply)
        self.events.emit("refused", code=error.code)
        log.debug(
            "refused {code} to {peer}: {message}",
            code=error.code,
            message=error.message,
            peer=node.conn.peer,
        )
        if error.fatal:
            node.conn.close(_CLOSE_FOR.get(error.code, CLOSE_POLICY), error.message)
            self.disconnect(node, error.message)

    def payload_limit(self, node: Node | None = None) -> int:
        """The largest message ``node`` may send now (less before it registers)."""
        if node is not None and node.node_id is None:
            return min(self.limits.max_unregistered_payload, self.limits.max_payload)
        return self.limits.max_payload

    def too_large(self, size: int, node: Node | None = None) -> GatewayError:
        limit = self.payload_limit(node)
        when = " before registering" if limit < self.limits.max_payload else ""
        return GatewayError(
            errors.PAYLOAD_TOO_LARGE,
            f"message of {size} bytes exceeds the limit of {limit} bytes{when}",
            details={"limit": limit},
        )

    # -- timers ---------------------------------------------------------

    def ping_all(self) -> None:
        """The gateway's heartbeat: every connection gets a ``ping``."""
        ping = Outbound(encode({"type": "ping", "timestamp": self.now_ms()}))
        for node in list(self.connections):
            node.send(ping)

    def drop_silent(self) -> None:
        """Drop connections that sent nothing for ``ping_timeout``."""
        deadline = self.clock.seconds() - self.limits.ping_timeout
        for node in [n for n in self.connections if n.last_seen < deadline]:
            reason = f"no message for {self.limits.ping_timeout:g} s (heartbeat timeout)"
            node.conn.close(CLOSE_POLICY, reason)
            self.disconnect(node, HEARTBEAT_TIMEOUT)

    # -- reports --------------------------------------------------------

    def now_ms(self) -> int:
        return int(self.clock.seconds() * 1000)

    def summary(self) -> dict[str, Any]:
        return {
            "uptime": int((self.clock.seconds() - self.started_at) * 1000),
            "totalNodes": self.rooms.node_count(),
            "totalGroups": self.rooms.room_count(),
            "messagesProcessed": self.messages_processed,
            "startedAt": int(self.started_at * 1000),
        }

    def node_list(self) -> list[dict[str, Any]]:
        return [node.report() for node in self.rooms.nodes()]

    def room_list(self) -> list[dict[str, Any]]:
        return [room.describe() for room in self.rooms.rooms()]

    # -- replies --------------------------------------------------------

    def _ack(self, node: Node, envelope: Envelope, payload: dict[str, Any]) -> None:
        payload["action"] = envelope.type
        reply: dict[str, Any] = {"type": "ack", "payload": payload}
        if envelope.message_id is not None:
            reply["messageId"] = envelope.message_id
        reply["timestamp"] = self.now_ms()
        self._reply(node, reply)

    def _reply(self, node: Node, envelope: dict[str, Any]) -> None:
        reply = Reply(envelope)
        node.send(reply)
        self.events.emit("replied", len(reply.data))

    # -- handlers -------------------------------------------------------

    def _registered(self, node: Node) -> str:
        if node.node_id is None:
            raise GatewayError(errors.NOT_REGISTERED, "register before sending this message")
        return node.node_id

    def _register(self, node: Node, envelope: Envelope) -> None:
        if node.node_id is not None:
            raise GatewayError(
                errors.ALREADY_REGISTERED,
                f"this connection is already registered as node {node.node_id}",
            )
        payload = envelope.payload
        limit = self.limits.max_name_length
        name = fields.text(payload, "name", limit, required=True)
        capabilities = fields.text_list(
            payload, "capabilities", self.limits.max_capabilities, limit
        )
        agent_name = fields.text(payload, "agentName", limit)
        session_id = fields.text(payload, "sessionId", 200)
        metadata = self._metadata(envelope)
        grant = node.grant
        credential = "ssh-key"
        if grant is None:
            try:
                grant = self.authenticator.authenticate(payload.get("token"))
            except AuthError as refusal:
                self.events.emit("register_refused", peer=node.conn.peer,
                                 transport=node.conn.transport_name, reason=str(refusal),
                                 credential=refusal.credential, key_id=refusal.key_id)
                raise GatewayError(errors.AUTH_FAILED, f"authentication failed: {refusal}", fatal=True)
            required = self.authenticator.required
            credential = "signed" if grant.key_id else "shared" if required else "none"
        if self.admission is not None:
            self.admission.check_register(node.source)
        if self.rooms.node_count() >= self.limits.max_nodes:
            raise GatewayError(
                errors.MAX_NODES_REACHED,
                f"gateway is full ({self.limits.max_nodes} nodes)",
                details={"limit": self.limits.max_nodes},
                fatal=True,
            )
        node_id = self.rooms.new_node_id()
        node.node_id = node_id
        node.introduce(name, capabilities, agent_name)
        node.session_id = session_id
        node.metadata = metadata
        node.grant = grant
        self.rooms.add_node(node)
        if self.admission is not None:
            self.admission.node_registered(node.source)
        if grant.expires_at is not None:
            node.expiry = self.clock.callLater(
                max(grant.expires_at - self.clock.seconds(), 0), self._expired, node
            )
        self.arrivals.add(nodeId=node_id, name=name, transport=node.conn.transport_name,
                          peer=node.conn.peer, subject=grant.subject)
        self.events.emit("registered", node=node, peer=node.conn.peer,
                         transport=node.conn.transport_name, grant=grant, credential=credential)
        self._ack(
            node,
            envelope,
            {
                "nodeId": node_id,
                "name": name,
                "capabilities": capabilities,
                "gateway": self.gateway_name,
                "heartbeat": {
                    "pingInterval": int(self.limits.ping_interval * 1000),
                    "pingTimeout": int(self.limits.ping_timeout * 1000),
                },
                "limits": {
                    "maxPayload": self.limits.max_payload,
                    "messageRate": self.limits.message_rate,
                    "messageBurst": self.limits.message_burst,
                    "byteRate": self.limits.byte_rate,
                    "byteBurst": self.limits.byte_burst,
                    "maxMetadata": self.limits.max_metadata,
                },
            },
        )

    def _expired(self, node: Node) -> None:
        node.expiry = None
        self.refuse(node, GatewayError(errors.AUTH_FAILED, "token expired", fatal=True))

    def keys_changed(self, key_ids: frozenset[str]) -> None:
        """The key ring changed: nodes whose token's key was retired are closed."""
        for node in list(self.rooms.nodes()):
            key_id = node.grant.key_id if node.grant is not None else None
            if key_id is not None and key_id not in key_ids:
                log.info("closing node {nodeId}: its token's key {key_id} was retired",
                         nodeId=node.node_id, key_id=key_id)
                self.refuse(node, GatewayError(
                    errors.AUTH_FAILED, "the key that signed this token was retired", fatal=True
                ))

    def _metadata(self, envelope: Envelope) -> str | None:
        """``metadata`` as the JSON text it was sent as, at most ``max_metadata`` bytes."""
        if fields.mapping(envelope.payload, "metadata") is None:
            return None
        text = envelope.payload_raw["metadata"]
        size = len(text.encode("utf-8", "surrogatepass"))
        limit = self.limits.max_metadata
        if size > limit:
            raise GatewayError(
                errors.INVALID_REQUEST,
                f"'metadata' is {size} bytes of JSON; the limit is {limit} bytes",
                details={"limit": limit},
            )
        return text

    def _unregister(self, node: Node, envelope: Envelope) -> None:
        node_id = self._registered(node)
        self._ack(node, envelope, {"nodeId": node_id})
        node.conn.close(CLOSE_NORMAL, "unregistered")
        self.disconnect(node, "unregistered")

    def _ping(self, node: Node, envelope: Envelope) -> None:
        reply: dict[str, Any] = {"type": "pong"}
        if envelope.message_id is not None:
            reply["messageId"] = envelope.message_id
        reply["timestamp"] = self.now_ms()
        self._reply(node, reply)

    def _pong(self, node: Node, envelope: Envelope) -> None:
        """Answer to the heartbeat; receiving it already refreshed ``last_seen``."""
