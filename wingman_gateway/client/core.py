"""``GatewayClient``: protocol v1 for nodes, over any ``IClientTransport``.

Requests, replies, the heartbeat answer, reconnecting and rejoining live
here once; transports only move text.
"""

from __future__ import annotations

import itertools
import json
import secrets
import weakref
from typing import Any, AsyncIterator, Callable, Sequence

from twisted.internet import defer
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from zope.interface import implementer

from wingman_gateway.client.backoff import Backoff
from wingman_gateway.client.errors import (
    CONNECTION_LOST,
    NOT_CONNECTED,
    TIMEOUT,
    ClientError,
)
from wingman_gateway.client.message import Message
from wingman_gateway.client.positions import Positions
from wingman_gateway.client.stream import MessageStream
from wingman_gateway.client.transport import (
    CLOSE_NORMAL,
    TRANSPORTS,
    IClientTransport,
    ITransportReceiver,
    transport_for,
)
from wingman_gateway.logs import get_logger

log = get_logger("wingman_gateway.client")

# A refusal that another reconnect attempt will not change.
_FINAL_ON_RECONNECT = frozenset({"AUTH_FAILED"})
# Rejoin failures that mean the connection went, not the room.
_CONNECTION_CODES = frozenset({CONNECTION_LOST, NOT_CONNECTED, TIMEOUT})

MessageListener = Callable[[Message], None]
StateListener = Callable[[str, dict[str, Any]], None]


def encode(envelope: dict[str, Any]) -> str:
    """Compact, strict JSON (the gateway refuses NaN and Infinity)."""
    return json.dumps(envelope, separators=(",", ":"), allow_nan=False)


@implementer(ITransportReceiver)
class _Link:
    """One transport's reports, passed on only while it is the client's current one."""

    def __init__(self, client: "GatewayClient") -> None:
        self.client = client
        self.transport: IClientTransport | None = None
        self.lost: Deferred[None] = Deferred()

    def text_received(self, text: str) -> None:
        if self.client._link is self:
            self.client._text_received(text)

    def connection_lost(self, code: int | None, reason: str) -> None:
        self.finish()
        if self.client._link is self:
            self.client._connection_lost(code, reason)

    def finish(self) -> None:
        """This connection is over (lost, or abandoned before it opened)."""
        if not self.lost.called:
            self.lost.callback(None)


class GatewayClient:
    """A node's connection to a Wingman Gateway: rooms, messages, presence.

    Awaitable methods run on the Twisted reactor (``ensureDeferred``). After
    a lost connection the client reconnects (unless ``reconnect=False`` or
    ``close()`` was called), registers again and rejoins its rooms.
    ``transport`` is ``"websocket"``, ``"http"`` (the HTTP bridge) or
    ``"auto"`` (WebSocket, else HTTP); by default the URL's scheme decides.
    """

    def __init__(
        self,
        url: str,
        name: str,
        *,
        token: str | None = None,
        capabilities: Sequence[str] = (),
        agent_name: str | None = None,
        metadata: dict[str, Any] | None = None,
        ca_file: str | None = None,
        reconnect: bool = True,
        min_backoff: float = 0.5,
        max_backoff: float = 30.0,
        request_timeout: float = 10.0,
        reactor: Any = None,
        transport: str | None = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        if transport is not None and transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, not {transport!r}")
        self.url = url
        self.transport = transport
        self.name = name
        self.token = token
        self.capabilities = list(capabilities)
        self.agent_name = agent_name
        self.metadata = metadata
        self.ca_file = ca_file
        self.reconnect = reconnect
        self.request_timeout = request_timeout
        self.node_id: str | None = None
        self.rooms: dict[str, str] = {}
        self.positions = Positions()
        self._reactor = reactor
        self._backoff = Backoff(min_backoff, max_backoff)
        self._descriptions: dict[str, str | None] = {}
        self._link: _Link | None = None
        self._connected = False
        self._closed = False
        self._reconnecting: Deferred[None] | None = None
        self._pending: dict[str, Deferred[dict[str, Any]]] = {}
        self._id_prefix = secrets.token_hex(4)
        self._ids = itertools.count(1)
        self._listeners: list[MessageListener] = []
        self._state_listeners: list[StateListener] = []
        self._streams: weakref.WeakSet[MessageStream] = weakref.WeakSet()

    @property
    def connected(self) -> bool:
        """Registered, with every room (re)joined; requests may be sent."""
        return self._connected

    # -- connection -------------------------------------------------------

    async def connect(self) -> str:
        """Open and register; the node id. A failure here never starts reconnecting."""
        if self._closed:
            raise ClientError(NOT_CONNECTED, "the client is closed")
        if self._connected and self.node_id is not None:
            return self.node_id
        if self._link is not None or self._reconnecting is not None:
            raise ClientError(NOT_CONNECTED, "a connection attempt is already in progress")
        node_id = await self._establish()
        self._connected = True
        self._emit("connected", {"nodeId": node_id})
        return node_id

    async def close(self) -> None:
        """Unregister (if connected) and close; no reconnecting afterwards."""
        if self._closed:
            return
        self._closed = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
        link = self._link
        if link is not None and link.transport is not None:
            if self._connected:
                try:
                    await self._request("unregister", internal=True)
                except ClientError as error:
                    log.debug("unregister failed while closing: {error}", error=error)
            link.transport.close(CLOSE_NORMAL, "client closed")
            if not link.lost.called:
                try:
                    await self._bounded(link.lost, "closing the connection")
                except ClientError:
                    log.warn("the connection to {url} did not close in time", url=self.url)
        if self._link is link and link is not None:
            self._connection_lost(None, "client closed")
        self._end_streams()

    async def _establish(self) -> str:
        """Open a transport and register on it (a first connect or a retry)."""
        link = _Link(self)
        self._link = link
        try:
            link.transport = transport_for(
                self.url,
                link,
                reactor=self._reactor,
                ca_file=self.ca_file,
                timeout=self.request_timeout,
                kind=self.transport,
            )
            await self._bounded(link.transport.open(), f"connecting to {self.url}")
            reply = await self._request("register", self._register_payload(), internal=True)
        except BaseException as error:
            self._drop(link)
            if isinstance(error, CancelledError) and self._closed:
                raise ClientError(NOT_CONNECTED, "the client was closed while connecting") from None
            raise
        node_id = reply["payload"]["nodeId"]
        self.node_id = node_id
        log.info("registered with {url} as node {nodeId}", url=self.url, nodeId=node_id)
        return node_id

    def _register_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"name": self.name}
        if self.capabilities:
            payload["capabilities"] = self.capabilities
        if self.token is not None:
            payload["token"] = self.token
        if self.agent_name is not None:
            payload["agentName"] = self.agent_name
        if self.metadata is not None:
            payload["metadata"] = self.metadata
        return payload

    def _drop(self, link: _Link) -> None:
        """Forget ``link`` (closing its transport) if it is still current."""
        if self._link is not link:
            return
        self._link = None
        self._fail_pending("the connection was abandoned")
        if link.transport is not None:
            link.transport.close(CLOSE_NORMAL, "client gave up")
        link.finish()

    def _connection_lost(self, code: int | None, reason: str) -> None:
        self._link = None
        was_up = self._connected
        self._connected = False
        self.node_id = None
        self._fail_pending(f"the connection was lost: {reason or code}")
        if not was_up:
            return  # an attempt in progress sees its request fail
        log.info("disconnected from {url}: {reason}", url=self.url, reason=reason, code=code)
        self._emit("disconnected", {"reason": reason or "connection lost", "code": code})
        if self._closed:
            return
        if self.reconnect:
            self._reconnecting = defer.ensureDeferred(self._reconnect_loop())
            self._reconnecting.addErrback(_log_unexpected, "reconnecting failed")
        else:
            self._end_streams()

    async def _reconnect_loop(self) -> None:
        """Retry with backoff until registered and rejoined, closed, or refused for good."""
        attempt = 0
        try:
            while not self._closed:
                attempt += 1
                delay = self._backoff.delay(attempt)
                self._emit("reconnecting", {"attempt": attempt, "delay": delay})
                await deferLater(self._reactor, delay, lambda: None)
                try:
                    node_id = await self._establish()
                    rooms = await self._rejoin()
                except ClientError as error:
                    if self._link is not None:
                        self._drop(self._link)
                    if error.code in _FINAL_ON_RECONNECT:
                        log.error("gateway refused to reconnect: {error}", error=error)
                        self._emit("disconnected", {"reason": str(error), "code": None})
                        self._end_streams()
                        return
                    log.info("reconnect attempt {attempt} failed: {error}", attempt=attempt, error=error)
                    continue
                if self._link is None:
                    continue  # lost again while rejoining
                self._connected = True
                log.info("reconnected as node {nodeId}", nodeId=node_id, rooms=sorted(rooms))
                self._emit("reconnected", {"nodeId": node_id, "rooms": dict(rooms)})
                return
        except CancelledError:
            if self._link is not None:
                self._drop(self._link)
        finally:
            self._reconnecting = None

    async def _rejoin(self) -> dict[str, str]:
        """Join every room this node was in again, by name; drop those refused."""
        joined: dict[str, str] = {}
        for name in list(self.rooms):
            payload = self._join_payload(name, True, self._descriptions.get(name))
            since = payload["since"] = self.positions.since(name)
            try:
                reply = await self._request("join_group", payload, internal=True)
            except ClientError as error:
                if error.code in _CONNECTION_CODES:
                    raise
                log.warn("could not rejoin room {room}: {error}", room=name, error=error)
                continue
            resumed = self.positions.resumed(since, reply["payload"])
            if resumed is not None:
                self._emit(*resumed)
            joined[reply["payload"]["groupName"]] = reply["payload"]["groupId"]
        for name in set(self.rooms) - set(joined):
            self._descriptions.pop(name, None)
        self.rooms.clear()
        self.rooms.update(joined)
        return joined

    # -- requests ---------------------------------------------------------

    async def join(self, room: str, create: bool = True, description: str | None = None) -> dict:
        """Join ``room`` by name (creating it if ``create``); the ack payload."""
        reply = await self._request("join_group", self._join_payload(room, create, description))
        ack = reply["payload"]
        self.rooms[ack["groupName"]] = ack["groupId"]
        self._descriptions[ack["groupName"]] = description
        self.positions.joined(ack)
        return ack

    @staticmethod
    def _join_payload(room: str, create: bool, description: str | None) -> dict[str, Any]:
        payload: dict[str, Any] = {"groupName": room, "createIfNotExists": create}
        if description is not None:
            payload["description"] = description
        return payload

    async def leave(self, room: str) -> dict:
        """Leave ``room`` (name or id); the ack payload."""
        reply = await self._request("leave_group", {"groupId": self.rooms.get(room, room)})
        ack = reply["payload"]
        self.rooms.pop(ack.get("groupName", room), None)
        self._descriptions.pop(ack.get("groupName", room), None)
        self.positions.forget(ack.get("groupName", room))
        return ack

    async def broadcast(self, room: str, message: Any, key: str | None = None) -> int:
        """Send ``message`` to the other members of ``room``; how many there were.

        A retry with the same idempotency ``key`` is delivered only once."""
        payload = {"groupId": self.rooms.get(room, room), "message": message}
        extra = {} if key is None else {"idempotencyKey": key}
        reply = await self._request("broadcast", payload, **extra)
        self.positions.sent(reply["payload"])
        return int(reply["payload"]["recipients"])

    async def direct(self, node_id: str, message: Any) -> None:
        """Send ``message`` to one node."""
        await self._request("direct", {"targetNodeId": node_id, "message": message})

    async def ping(self) -> float:
        """Round trip to the gateway, in seconds."""
        started = self._reactor.seconds()
        await self._request("ping")
        return float(self._reactor.seconds() - started)

    async def who(self, room: str) -> list[dict]:
        """Members of a room this node is in (the gateway's idempotent join ack)."""
        group_id = self.rooms.get(room) or (room if room in self.rooms.values() else None)
        if group_id is None:
            raise ClientError("NOT_A_MEMBER", f"not in room {room!r}; join it first")
        reply = await self._request("join_group", {"groupId": group_id, "createIfNotExists": False})
        return list(reply["payload"]["members"])

    async def _request(
        self, kind: str, payload: dict[str, Any] | None = None, *, internal: bool = False, **fields: Any
    ) -> dict[str, Any]:
        """Send with a fresh messageId; the ack (or pong) envelope, or ClientError."""
        link = self._link
        if link is None or link.transport is None or not (internal or self._connected):
            state = "the client is closed" if self._closed else "not connected to the gateway"
            if self._reconnecting is not None:
                state += " (reconnecting)"
            raise ClientError(NOT_CONNECTED, state)
        message_id = f"{self._id_prefix}-{next(self._ids)}"
        envelope: dict[str, Any] = {"type": kind, "messageId": message_id, **fields}
        if payload is not None:
            envelope["payload"] = payload
        text = encode(envelope)
        reply: Deferred[dict[str, Any]] = Deferred()
        self._pending[message_id] = reply
        try:
            link.transport.send_text(text)
            answer = await self._bounded(reply, f"waiting for the reply to {kind}")
        finally:
            self._pending.pop(message_id, None)
        if answer.get("type") == "error":
            raise ClientError.from_payload(answer.get("payload"))
        return answer

    async def _bounded(self, waiting: Deferred[Any], what: str) -> Any:
        """Await ``waiting`` for at most ``request_timeout`` (then TIMEOUT)."""
        waiting.addTimeout(self.request_timeout, self._reactor)
        try:
            return await waiting
        except defer.TimeoutError:
            raise ClientError(
                TIMEOUT, f"{what}: no answer within {self.request_timeout:g} s"
            ) from None

    def _fail_pending(self, why: str) -> None:
        for waiting in list(self._pending.values()):
            if not waiting.called:
                waiting.errback(ClientError(CONNECTION_LOST, why))

    # -- what arrives -----------------------------------------------------

    def _text_received(self, text: str) -> None:
        try:
            envelope = json.loads(text)
        except ValueError:
            log.warn("dropped a frame that is not JSON from {url}", url=self.url)
            return
        if not isinstance(envelope, dict):
            log.warn("dropped a frame that is not a JSON object from {url}", url=self.url)
            return
        kind = envelope.get("type")
        if kind == "ping":
            self._answer_heartbeat(envelope)
            return
        message_id = envelope.get("messageId")
        if kind in ("ack", "error", "pong") and message_id is not None:
            waiting = self._pending.get(message_id) if isinstance(message_id, str) else None
            if waiting is not None:
                if not waiting.called:
                    waiting.callback(envelope)
                return
            log.debug("reply {kind} to a request given up on: {id}", kind=kind, id=message_id)
            return
        if kind in ("ack", "pong"):
            return
        if kind == "error":
            log.warn("gateway error: {payload}", payload=envelope.get("payload"))
        if kind == "broadcast" and not self.positions.delivered(envelope):
            return  # already delivered before a reconnect
        self._deliver(Message.from_envelope(envelope))

    def _answer_heartbeat(self, ping: dict[str, Any]) -> None:
        """The gateway drops nodes that do not answer its ``ping``."""
        pong: dict[str, Any] = {"type": "pong"}
        if ping.get("messageId") is not None:
            pong["messageId"] = ping["messageId"]
        link = self._link
        if link is not None and link.transport is not None:
            try:
                link.transport.send_text(encode(pong))
            except ClientError:
                pass

    def _deliver(self, message: Message) -> None:
        for listener in list(self._listeners):
            try:
                listener(message)
            except Exception:
                log.failure("message listener {listener!r} failed", listener=listener)
        for stream in list(self._streams):
            stream.push(message)

    # -- subscribers ------------------------------------------------------

    def add_listener(self, callback: MessageListener) -> Callable[[], None]:
        """Call ``callback`` with every delivered Message; returns its remover."""
        self._listeners.append(callback)
        return lambda: _discard(self._listeners, callback)

    def on_state(self, callback: StateListener) -> Callable[[], None]:
        """Call ``callback(event, details)`` on connection changes; returns its remover."""
        self._state_listeners.append(callback)
        return lambda: _discard(self._state_listeners, callback)

    def __aiter__(self) -> AsyncIterator[Message]:
        """Messages delivered from now on, in order; ends when the client closes."""
        stream = MessageStream()
        if self._closed:
            stream.end()
        else:
            self._streams.add(stream)
        return stream

    def _emit(self, event: str, details: dict[str, Any]) -> None:
        for listener in list(self._state_listeners):
            try:
                listener(event, details)
            except Exception:
                log.failure("state listener {listener!r} failed", listener=listener)

    def _end_streams(self) -> None:
        for stream in list(self._streams):
            stream.end()
        self._streams = weakref.WeakSet()


def _log_unexpected(failure: Failure, what: str) -> None:
    if not failure.check(CancelledError):
        log.failure(what, failure)


def _discard(callbacks: list[Any], callback: Any) -> None:
    if callback in callbacks:
        callbacks.remove(callback)
