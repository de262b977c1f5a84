"""The Router: the one shared object every transport hands envelopes to.

It owns nodes, rooms, auth, rate limits and validation, and answers only
through ``IConnection``; it never imports a transport.
"""

from __future__ import annotations

import secrets
from typing import Any, Callable

from twisted.internet.interfaces import IReactorTime
from wingman_gateway.logs import get_logger

from wingman_gateway import errors, fields
from wingman_gateway.auth import AuthError, Authenticator, Grant
from wingman_gateway.connection import (
    CLOSE_NORMAL,
    CLOSE_POLICY,
    CLOSE_TOO_BIG,
    CLOSE_TRY_AGAIN,
    IConnection,
    Outbound,
)
from wingman_gateway.envelope import Envelope, decode, encode, splice
from wingman_gateway.errors import GatewayError
from wingman_gateway.limits import Limits
from wingman_gateway.ratelimit import SlidingWindow
from wingman_gateway.state import Room, Session

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
    ) -> None:
        self.clock = clock
        self.limits = limits or Limits()
        self.authenticator = authenticator or Authenticator(required=False)
        self.gateway_name = gateway_name
        self.sessions: set[Session] = set()
        self.nodes: dict[str, Session] = {}
        self.rooms: dict[str, Room] = {}
        self.rooms_by_name: dict[str, Room] = {}
        self.started_at = clock.seconds()
        self.messages_processed = 0
        # Extra /health sections (e.g. "discovery"), each made when /health is asked.
        self.reports: dict[str, Callable[[], Any]] = {}
        self._handlers: dict[str, Callable[[Session, Envelope], None]] = {
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

    def connect(self, conn: IConnection, grant: Grant | None = None) -> Session:
        """A transport has a new client connection.

        ``grant`` is a credential the transport already verified (an SSH
        key); such a session registers without a token.
        """
        now = self.clock.seconds()
        limits = self.limits
        window = (
            SlidingWindow(limits.rate_limit, limits.rate_window) if limits.rate_limit > 0 else None
        )
        session = Session(conn=conn, send=conn.send, connected_at=now, last_seen=now, window=window)
        session.grant = grant
        self.sessions.add(session)
        return session

    def receive(self, session: Session, data: bytes | str) -> None:
        """One envelope arrived on ``session``'s connection."""
        if session.closed:
            return
        now = self.clock.seconds()
        session.last_seen = now
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
            if session.window is not None and envelope.type not in UNMETERED:
                wait = session.window.hit(now)
                if wait:
                    retry_ms = int(wait * 1000) + 1
                    raise GatewayError(
                        errors.RATE_LIMITED,
                        f"rate limit of {self.limits.rate_limit} messages per "
                        f"{self.limits.rate_window:g} s exceeded",
                        details={"retryAfterMs": retry_ms},
                    )
            self.messages_processed += 1
            handler(session, envelope)
        except GatewayError as error:
            message_id = envelope.message_id if envelope is not None else error.message_id
            self.refuse(session, error, message_id)

    def disconnect(self, session: Session, reason: str = "disconnected") -> None:
        """The connection is gone: the node leaves its rooms at once."""
        if session.closed:
            return
        session.closed = True
        self.sessions.discard(session)
        if session.node_id is not None:
            self.nodes.pop(session.node_id, None)
            for room in list(session.rooms.values()):
                self._leave(session, room, reason)
            log.info(
                "node {nodeId} ({name}) left: {reason}",
                nodeId=session.node_id,
                name=session.name,
                reason=reason,
                transport=session.conn.transport_name,
            )

    def refuse(self, session: Session, error: GatewayError, message_id: Any = None) -> None:
        """Answer with an error envelope; close too if the error is fatal."""
        reply: dict[str, Any] = {"type": "error", "payload": error.payload()}
        if message_id is not None:
            reply["messageId"] = message_id
        reply["timestamp"] = self.now_ms()
        session.send(Outbound(encode(reply)))
        log.debug(
            "refused {code} to {peer}: {message}",
            code=error.code,
            message=error.message,
            peer=session.conn.peer,
        )
        if error.fatal:
            session.conn.close(_CLOSE_FOR.get(error.code, CLOSE_POLICY), error.message)
            self.disconnect(session, error.message)

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
        for session in list(self.sessions):
            session.send(ping)

    def drop_silent(self) -> None:
        """Drop connections that sent nothing for ``ping_timeout``."""
        deadline = self.clock.seconds() - self.limits.ping_timeout
        for session in [s for s in self.sessions if s.last_seen < deadline]:
            reason = f"no message for {self.limits.ping_timeout:g} s (heartbeat timeout)"
            session.conn.close(CLOSE_POLICY, reason)
            self.disconnect(session, "heartbeat timeout")

    # -- reports --------------------------------------------------------

    def now_ms(self) -> int:
        return int(self.clock.seconds() * 1000)

    def summary(self) -> dict[str, Any]:
        return {
            "uptime": int((self.clock.seconds() - self.started_at) * 1000),
            "totalNodes": len(self.nodes),
            "totalGroups": len(self.rooms),
            "messagesProcessed": self.messages_processed,
            "startedAt": int(self.started_at * 1000),
        }

    def node_list(self) -> list[dict[str, Any]]:
        return [
            {
                "id": s.node_id,
                "name": s.name,
                "capabilities": s.capabilities,
                "rooms": [room.name for room in s.rooms.values()],
                "transport": s.conn.transport_name,
                "connectedAt": int(s.connected_at * 1000),
                "lastSeen": int(s.last_seen * 1000),
            }
            for s in self.nodes.values()
        ]

    def room_list(self) -> list[dict[str, Any]]:
        return [room.describe() for room in self.rooms.values()]

    # -- replies --------------------------------------------------------

    def _ack(self, session: Session, envelope: Envelope, payload: dict[str, Any]) -> None:
        payload["action"] = envelope.type
        reply: dict[str, Any] = {"type": "ack", "payload": payload}
        if envelope.message_id is not None:
            reply["messageId"] = envelope.message_id
        reply["timestamp"] = self.now_ms()
        session.send(Outbound(encode(reply)))

    def _presence(self, room: Room, session: Session, event: str, reason: str | None) -> None:
        payload = session.describe()
        payload.update(
            event=event, groupId=room.id, groupName=room.name, memberCount=len(room.members)
        )
        if reason is not None:
            payload["reason"] = reason
        notice = Outbound(
            encode(
                {
                    "type": "presence",
                    "nodeId": session.node_id,
                    "groupId": room.id,
                    "payload": payload,
                    "timestamp": self.now_ms(),
                }
            )
        )
        for member in room.recipients:
            if member is not session:
                member.send(notice)

    # -- handlers -------------------------------------------------------

    def _registered(self, session: Session) -> str:
        if session.node_id is None:
            raise GatewayError(errors.NOT_REGISTERED, "register before sending this message")
        return session.node_id

    def _register(self, session: Session, envelope: Envelope) -> None:
        if session.node_id is not None:
            raise GatewayError(
                errors.ALREADY_REGISTERED,
                f"this connection is already registered as node {session.node_id}",
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
        grant = session.grant
        if grant is None:
            try:
                grant = self.authenticator.authenticate(payload.get("token"))
            except AuthError as refusal:
                raise GatewayError(errors.AUTH_FAILED, f"authentication failed: {refusal}", fatal=True)
        if len(self.nodes) >= self.limits.max_nodes:
            raise GatewayError(
                errors.MAX_NODES_REACHED,
                f"gateway is full ({self.limits.max_nodes} nodes)",
                details={"limit": self.limits.max_nodes},
                fatal=True,
            )
        node_id = secrets.token_hex(8)
        while node_id in self.nodes:
            node_id = secrets.token_hex(8)
        session.node_id = node_id
        session.name = name
        session.capabilities = capabilities
        session.agent_name = agent_name
        session.session_id = session_id
        session.metadata = metadata
        session.grant = grant
        self.nodes[node_id] = session
        log.info(
            "node {nodeId} ({name}) registered over {transport} from {peer}",
            nodeId=node_id,
            name=name,
            transport=session.conn.transport_name,
            peer=session.conn.peer,
            subject=grant.subject,
        )
        self._ack(
            session,
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

    def _unregister(self, session: Session, envelope: Envelope) -> None:
        node_id = self._registered(session)
        self._ack(session, envelope, {"nodeId": node_id})
        session.conn.close(CLOSE_NORMAL, "unregistered")
        self.disconnect(session, "unregistered")

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
            room = self.rooms.get(group_id) or self.rooms_by_name.get(group_id)
        elif group_name is not None:
            room = self.rooms_by_name.get(group_name)
        if room is None:
            wanted = group_id if group_id is not None else group_name
            raise GatewayError(errors.GROUP_NOT_FOUND, f"no room {wanted!r}")
        return room

    def _join_group(self, session: Session, envelope: Envelope) -> None:
        node_id = self._registered(session)
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
            self._check_may_join(session, name)
            self._check_room_quota(session)
            if len(self.rooms) >= limits.max_rooms:
                raise GatewayError(
                    errors.FORBIDDEN,
                    f"the gateway has reached its limit of {limits.max_rooms} rooms",
                    details={"limit": limits.max_rooms},
                )
            room = Room(
                id=secrets.token_hex(8),
                name=name,
                description=description,
                strategy=strategy,
                created_at=self.now_ms(),
                created_by=node_id,
            )
            self.rooms[room.id] = room
            self.rooms_by_name[room.name] = room
            created = True
        if node_id not in room.members:
            self._check_may_join(session, room.name)
            self._check_room_quota(session)
            room.add(session)
            session.rooms[room.id] = room
            self._presence(room, session, "joined", None)
        self._ack(
            session,
            envelope,
            {
                "groupId": room.id,
                "groupName": room.name,
                "created": created,
                "description": room.description,
                "strategy": room.strategy,
                "members": [member.describe() for member in room.recipients],
            },
        )

    def _check_may_join(self, session: Session, room_name: str) -> None:
        if session.grant is not None and not session.grant.may_join(room_name):
            raise GatewayError(errors.FORBIDDEN, f"your token does not allow room {room_name!r}")

    def _check_room_quota(self, session: Session) -> None:
        limit = self.limits.max_rooms_per_node
        if len(session.rooms) >= limit:
            raise GatewayError(
                errors.FORBIDDEN,
                f"a node may be in at most {limit} rooms",
                details={"limit": limit},
            )

    def _leave_group(self, session: Session, envelope: Envelope) -> None:
        self._registered(session)
        room = self._find_room(envelope)
        if room.id not in session.rooms:
            raise GatewayError(errors.NOT_A_MEMBER, f"you are not a member of room {room.name!r}")
        self._leave(session, room, "left")
        self._ack(session, envelope, {"groupId": room.id, "groupName": room.name})

    def _leave(self, session: Session, room: Room, reason: str) -> None:
        room.remove(session)
        session.rooms.pop(room.id, None)
        if room.members:
            self._presence(room, session, "left", reason)
        else:
            del self.rooms[room.id]
            del self.rooms_by_name[room.name]

    def _message_text(self, envelope: Envelope) -> str:
        raw = envelope.payload_raw.get("message")
        if raw is None:
            raise GatewayError(errors.INVALID_REQUEST, "'message' is required")
        return raw

    def _broadcast(self, session: Session, envelope: Envelope) -> None:
        node_id = self._registered(session)
        room = self._find_room(envelope)
        message = self._message_text(envelope)
        if node_id not in room.members:
            raise GatewayError(errors.NOT_A_MEMBER, f"you are not a member of room {room.name!r}")
        head = {
            "type": "broadcast",
            "nodeId": node_id,
            "fromNodeId": node_id,
            "fromName": session.name,
            "groupId": room.id,
            "groupName": room.name,
            "timestamp": self.now_ms(),
        }
        out = Outbound(splice(head, "payload", message))
        for member in room.recipients:
            if member is not session:
                member.send(out)
        if envelope.message_id is not None:
            self._ack(
                session,
                envelope,
                {"groupId": room.id, "groupName": room.name, "recipients": len(room.recipients) - 1},
            )

    def _direct(self, session: Session, envelope: Envelope) -> None:
        node_id = self._registered(session)
        target_id = fields.first_text(
            (envelope.payload, envelope.fields), "targetNodeId", self.limits.max_name_length
        )
        if target_id is None:
            raise GatewayError(errors.INVALID_REQUEST, "'targetNodeId' is required")
        message = self._message_text(envelope)
        target = self.nodes.get(target_id)
        if target is None:
            raise GatewayError(errors.NODE_NOT_FOUND, f"no node {target_id!r}")
        head = {
            "type": "direct",
            "nodeId": node_id,
            "fromNodeId": node_id,
            "fromName": session.name,
            "targetNodeId": target_id,
            "timestamp": self.now_ms(),
        }
        target.send(Outbound(splice(head, "payload", message)))
        if envelope.message_id is not None:
            self._ack(session, envelope, {"targetNodeId": target_id, "delivered": True})

    def _ping(self, session: Session, envelope: Envelope) -> None:
        reply: dict[str, Any] = {"type": "pong"}
        if envelope.message_id is not None:
            reply["messageId"] = envelope.message_id
        reply["timestamp"] = self.now_ms()
        session.send(Outbound(encode(reply)))

    def _pong(self, session: Session, envelope: Envelope) -> None:
        """Answer to the heartbeat; receiving it already refreshed ``last_seen``."""
