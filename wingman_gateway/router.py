"""The Router: the one shared object every transport hands envelopes to.

It decides what may happen (validation, auth, limits, rate limits) and
answers through ``IConnection``; where nodes and rooms live and how a
message reaches them is the rooms seam's (``rooms.IRooms``). It never
imports a transport.
"""

from __future__ import annotations

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
    IConnection,
    Outbound,
    Reply,
)
from wingman_gateway.envelope import Envelope, decode, encode, splice
from wingman_gateway.errors import GatewayError
from wingman_gateway.limits import Limits
from wingman_gateway.ratelimit import SlidingWindow
from wingman_gateway.rooms import IRooms, LocalRooms
from wingman_gateway.state import Node, Room

log = get_logger("wingman_gateway.router")

UNMETERED = frozenset({"ping", "pong"})
STRATEGIES = ("parallel", "sequential")

# How a fatal error closes the connection.
_CLOSE_FOR = {
    errors.AUTH_FAILED: CLOSE_POLICY,
    errors.MAX_NODES_REACHED: CLOSE_TRY_AGAIN,
    errors.PAYLOAD_TOO_LARGE: CLOSE_TOO_BIG,
}


class Router:
    """Routes envelopes between connected nodes and rooms."""

    def __init__(
        self,
        clock: IReactorTime,
        limits: Limits | None = None,
        authenticator: Authenticator | None = None,
        gateway_name: str = "wingman-gateway",
        rooms: IRooms | None = None,
        admission: Admission | None = None,
    ) -> None:
        self.clock = clock
        self.limits = limits or Limits()
        self.authenticator = authenticator or Authenticator(required=False)
        self.gateway_name = gateway_name
        self.rooms: IRooms = rooms if rooms is not None else LocalRooms(clock)
        # Per-source caps on registered nodes (None: no caps, as in unit tests).
        self.admission = admission
        # Every open connection, registered or not (heartbeat, shutdown).
        self.connections: set[Node] = set()
        self.started_at = clock.seconds()
        self.messages_processed = 0
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

    def connect(self, conn: IConnection, grant: Grant | None = None, source: str | None = None) -> Node:
        """A transport has a new client connection.

        ``grant`` is a credential the transport already verified (an SSH
        key); such a connection registers without a token. ``source`` is
        the client's address as ``admission`` counts it.
        """
        now = self.clock.seconds()
        limits = self.limits
        window = (
            SlidingWindow(limits.rate_limit, limits.rate_window) if limits.rate_limit > 0 else None
        )
        node = Node(conn=conn, send=conn.send, connected_at=now, last_seen=now, window=window)
        node.grant = grant
        node.source = source
        self.connections.add(node)
        return node

    def receive(self, node: Node, data: bytes | str) -> None:
        """One envelope arrived on ``node``'s connection."""
        if node.closed:
            return
        now = self.clock.seconds()
        node.last_seen = now
        envelope: Envelope | None = None
        try:
            if len(data) > self.limits.max_payload:
                raise self.too_large(len(data))
            envelope = decode(data, self.limits.max_depth)
            handler = self._handlers.get(envelope.type)
            if handler is None:
                raise GatewayError(
                    errors.UNKNOWN_MESSAGE_TYPE, f"unknown message type {envelope.type[:40]!r}"
                )
            if node.window is not None and envelope.type not in UNMETERED:
                wait = node.window.hit(now)
                if wait:
                    retry_ms = int(wait * 1000) + 1
                    raise GatewayError(
                        errors.RATE_LIMITED,
                        f"rate limit of {self.limits.rate_limit} messages per "
                        f"{self.limits.rate_window:g} s exceeded",
                        details={"retryAfterMs": retry_ms},
                    )
            self.messages_processed += 1
            handler(node, envelope)
        except GatewayError as error:
            message_id = envelope.message_id if envelope is not None else error.message_id
            self.refuse(node, error, message_id)

    def disconnect(self, node: Node, reason: str = "disconnected") -> None:
        """The connection is gone: the node leaves its rooms at once."""
        if node.closed:
            return
        node.closed = True
        self.connections.discard(node)
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
        node.send(Reply(reply))
        log.debug(
            "refused {code} to {peer}: {message}",
            code=error.code,
            message=error.message,
            peer=node.conn.peer,
        )
        if error.fatal:
            node.conn.close(_CLOSE_FOR.get(error.code, CLOSE_POLICY), error.message)
            self.disconnect(node, error.message)

    def too_large(self, size: int) -> GatewayError:
        return GatewayError(
            errors.PAYLOAD_TOO_LARGE,
            f"message of {size} bytes exceeds the limit of {self.limits.max_payload} bytes",
            details={"limit": self.limits.max_payload},
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
            self.disconnect(node, "heartbeat timeout")

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
        node.send(Reply(reply))

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
        metadata = fields.mapping(payload, "metadata")
        grant = node.grant
        if grant is None:
            try:
                grant = self.authenticator.authenticate(payload.get("token"))
            except AuthError as refusal:
                raise GatewayError(errors.AUTH_FAILED, f"authentication failed: {refusal}", fatal=True)
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
        node.name = name
        node.capabilities = capabilities
        node.agent_name = agent_name
        node.session_id = session_id
        node.metadata = metadata
        node.grant = grant
        self.rooms.add_node(node)
        if self.admission is not None:
            self.admission.node_registered(node.source)
        log.info(
            "node {nodeId} ({name}) registered over {transport} from {peer}",
            nodeId=node_id,
            name=name,
            transport=node.conn.transport_name,
            peer=node.conn.peer,
            subject=grant.subject,
        )
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
                    "rateLimit": self.limits.rate_limit,
                    "rateWindowMs": int(self.limits.rate_window * 1000),
                },
            },
        )

    def _unregister(self, node: Node, envelope: Envelope) -> None:
        node_id = self._registered(node)
        self._ack(node, envelope, {"nodeId": node_id})
        node.conn.close(CLOSE_NORMAL, "unregistered")
        self.disconnect(node, "unregistered")

    def _find_room(self, envelope: Envelope) -> Room:
        """The room a request names by id or by name (payload before envelope)."""
        sources = (envelope.payload, envelope.fields)
        limit = self.limits.max_name_length
        group_id = fields.first_text(sources, "groupId", limit)
        group_name = fields.first_text(sources, "groupName", limit)
        if group_id is None and group_name is None:
            raise GatewayError(errors.INVALID_REQUEST, "'groupId' or 'groupName' is required")
        room = None
        if group_id is not None:
            # Clients may give a room's name where its id is expected.
            room = self.rooms.find(group_id)
        elif group_name is not None:
            room = self.rooms.find_by_name(group_name)
        if room is None:
            wanted = group_id if group_id is not None else group_name
            raise GatewayError(errors.GROUP_NOT_FOUND, f"no room {wanted!r}")
        return room

    def _join_group(self, node: Node, envelope: Envelope) -> None:
        node_id = self._registered(node)
        payload = envelope.payload
        limits = self.limits
        create = fields.flag(payload, "createIfNotExists", False)
        description = fields.text(payload, "description", limits.max_description_length)
        strategy = fields.choice(payload, "strategy", STRATEGIES)
        created = False
        try:
            room = self._find_room(envelope)
        except GatewayError as missing:
            name = fields.text(payload, "groupName", limits.max_name_length)
            if missing.code != errors.GROUP_NOT_FOUND or not create or name is None:
                raise
            self._check_may_join(node, name)
            self._check_room_quota(node)
            if self.rooms.room_count() >= limits.max_rooms:
                raise GatewayError(
                    errors.FORBIDDEN,
                    f"the gateway has reached its limit of {limits.max_rooms} rooms",
                    details={"limit": limits.max_rooms},
                )
            room = self.rooms.create(name, description, strategy, node_id)
            created = True
        if node_id not in room.members:
            self._check_may_join(node, room.name)
            self._check_room_quota(node)
            self.rooms.join(room, node)
        self._ack(
            node,
            envelope,
            {
                "groupId": room.id,
                "groupName": room.name,
                "created": created,
                "description": room.description,
                "strategy": room.strategy,
                "members": self.rooms.members(room),
            },
        )

    def _check_may_join(self, node: Node, room_name: str) -> None:
        if node.grant is not None and not node.grant.may_join(room_name):
            raise GatewayError(errors.FORBIDDEN, f"your token does not allow room {room_name!r}")

    def _check_room_quota(self, node: Node) -> None:
        limit = self.limits.max_rooms_per_node
        if len(node.rooms) >= limit:
            raise GatewayError(
                errors.FORBIDDEN,
                f"a node may be in at most {limit} rooms",
                details={"limit": limit},
            )

    def _leave_group(self, node: Node, envelope: Envelope) -> None:
        self._registered(node)
        room = self._find_room(envelope)
        if room.id not in node.rooms:
            raise GatewayError(errors.NOT_A_MEMBER, f"you are not a member of room {room.name!r}")
        self.rooms.leave(room, node, "left")
        self._ack(node, envelope, {"groupId": room.id, "groupName": room.name})

    def _message_text(self, envelope: Envelope) -> str:
        raw = envelope.payload_raw.get("message")
        if raw is None:
            raise GatewayError(errors.INVALID_REQUEST, "'message' is required")
        return raw

    def _broadcast(self, node: Node, envelope: Envelope) -> None:
        node_id = self._registered(node)
        room = self._find_room(envelope)
        message = self._message_text(envelope)
        if node_id not in room.members:
            raise GatewayError(errors.NOT_A_MEMBER, f"you are not a member of room {room.name!r}")
        head = {
            "type": "broadcast",
            "nodeId": node_id,
            "fromNodeId": node_id,
            "fromName": node.name,
            "groupId": room.id,
            "groupName": room.name,
            "timestamp": self.now_ms(),
        }
        recipients = self.rooms.deliver(room, Outbound(splice(head, "payload", message)), node)
        if envelope.message_id is not None:
            self._ack(
                node,
                envelope,
                {"groupId": room.id, "groupName": room.name, "recipients": recipients},
            )

    def _direct(self, node: Node, envelope: Envelope) -> None:
        node_id = self._registered(node)
        target_id = fields.first_text(
            (envelope.payload, envelope.fields), "targetNodeId", self.limits.max_name_length
        )
        if target_id is None:
            raise GatewayError(errors.INVALID_REQUEST, "'targetNodeId' is required")
        message = self._message_text(envelope)
        head = {
            "type": "direct",
            "nodeId": node_id,
            "fromNodeId": node_id,
            "fromName": node.name,
            "targetNodeId": target_id,
            "timestamp": self.now_ms(),
        }
        if not self.rooms.send_to(target_id, Outbound(splice(head, "payload", message))):
            raise GatewayError(errors.NODE_NOT_FOUND, f"no node {target_id!r}")
        if envelope.message_id is not None:
            self._ack(node, envelope, {"targetNodeId": target_id, "delivered": True})

    def _ping(self, node: Node, envelope: Envelope) -> None:
        reply: dict[str, Any] = {"type": "pong"}
        if envelope.message_id is not None:
            reply["messageId"] = envelope.message_id
        reply["timestamp"] = self.now_ms()
        node.send(Reply(reply))

    def _pong(self, node: Node, envelope: Envelope) -> None:
        """Answer to the heartbeat; receiving it already refreshed ``last_seen``."""
