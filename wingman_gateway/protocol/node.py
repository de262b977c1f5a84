"""``NodeCore``: a node's side of protocol v1, over any runtime and transport.

Requests, replies, the heartbeat answer, reconnecting and rejoining live here
once; drivers supply the loop (``Runtime``) and the wire (``new_transport``).
"""

from __future__ import annotations

import itertools
import json
import secrets
import weakref
from typing import Any, AsyncIterator, Awaitable, Callable, Sequence

from wingman_gateway.protocol.backoff import Backoff
from wingman_gateway.protocol.envelopes import encode, join_payload, register_payload
from wingman_gateway.protocol.errors import (
    CONNECTION_FAILED, CONNECTION_LOST, NOT_CONNECTED, TIMEOUT, TLS_ERROR, ClientError,
)
from wingman_gateway.protocol.message import Message
from wingman_gateway.protocol.positions import Positions
from wingman_gateway.protocol.runtime import CLOSE_NORMAL, Runtime, Task, Transport
from wingman_gateway.protocol.stream import MessageStream

# A refusal that another reconnect attempt will not change.
FINAL_ON_RECONNECT = frozenset({"AUTH_FAILED"})
# Messages kept for the first listener or loop, from before there was one.
HELD_FOR_FIRST_CONSUMER = 100
# Rejoin failures that mean the connection went, not the room.
CONNECTION_CODES = frozenset({CONNECTION_LOST, NOT_CONNECTED, TIMEOUT})
TRY_NEXT = frozenset({CONNECTION_FAILED, CONNECTION_LOST, TIMEOUT, TLS_ERROR, "MAX_NODES_REACHED"})  # next URL

MessageListener = Callable[[Message], None]
StateListener = Callable[[str, dict[str, Any]], None]


class Link:
    """One transport's reports, passed on only while it is the node's current one."""

    def __init__(self, node: "NodeCore") -> None:
        self.node = node
        self.transport: Transport | None = None
        self.lost = node.runtime.future()

    def text_received(self, text: str) -> None:
        if self.node._link is self:
            self.node._text_received(text)

    def connection_lost(self, code: int | None, reason: str) -> None:
        self.finish()
        if self.node._link is self:
            self.node._connection_lost(code, reason)

    def finish(self) -> None:
        """This connection is over (lost, or abandoned before it opened)."""
        self.node.runtime.resolve(self.lost, None)


class NodeCore:
    """A node's connection to a Wingman Gateway: rooms, messages, presence.

    After a lost connection the node reconnects (unless ``reconnect=False``
    or ``close()`` was called), registers again and rejoins its rooms.
    Drivers subclass it and implement ``new_transport``.
    """

    link_class: type[Link] = Link

    def __init__(
        self,
        runtime: Runtime,
        url: str | Sequence[str],
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
        transport: str | None = None,
    ) -> None:
        self.runtime = runtime
        self.log = runtime.log
        # Several URLs: one cluster's gateways, tried in ``candidates()`` order.
        self.urls = [url] if isinstance(url, str) else list(url)
        if not self.urls:
            raise ValueError("at least one gateway URL is needed")
        self.url = self.urls[0]
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
        self._backoff = Backoff(min_backoff, max_backoff)
        self._descriptions: dict[str, str | None] = {}
        self._link: Link | None = None
        self._connected = False
        self._closed = False
        self._reconnecting: Task | None = None
        self._pending: dict[str, Any] = {}
        self._id_prefix = secrets.token_hex(4)
        self._ids = itertools.count(1)
        self._listeners: list[MessageListener] = []
        self._state_listeners: list[StateListener] = []
        self._streams: weakref.WeakSet[MessageStream] = weakref.WeakSet()
        # What arrived before anyone consumed (say, while connect() joined
        # rooms: over the HTTP bridge a message can overtake the join's
        # reply); None once the first listener or loop took it.
        self._held: list[Message] | None = []

    def new_transport(self, link: Link) -> Transport:
        """The transport for one connection attempt, reporting to ``link``."""
        raise NotImplementedError

    @property
    def connected(self) -> bool:
        """Registered, with every room (re)joined; requests may be sent."""
        return self._connected

    @property
    def closed(self) -> bool:
        return self._closed

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
        self._emit("connected", {"nodeId": node_id, "url": self.url})
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
                    self.log.debug("unregister failed while closing: {error}", error=error)
            link.transport.close(CLOSE_NORMAL, "client closed")
            if not self.runtime.is_done(link.lost):
                try:
                    await self._bounded(link.lost, "closing the connection")
                except ClientError:
                    self.log.warn("the connection to {url} did not close in time", url=self.url)
        if self._link is link and link is not None:
            self._connection_lost(None, "client closed")
        self._end_streams()

    async def candidates(self) -> list[str]:
        """The gateway URLs to try, best first; drivers rank them by load."""
        return list(self.urls)

    async def _establish(self) -> str:
        """Register with the first gateway that takes us (a first connect or a retry)."""
        urls = await self.candidates() if len(self.urls) > 1 else list(self.urls)
        for index, url in enumerate(urls):
            self.url = url
            try:
                return await self._establish_at()
            except ClientError as error:
                if error.code not in TRY_NEXT or index == len(urls) - 1 or self._closed:
                    raise
                self.log.info("gateway {url} not available ({error}); trying the next", url=url, error=error)
        raise ClientError(NOT_CONNECTED, "no gateway URL to try")

    async def _establish_at(self) -> str:
        """Open a transport to ``self.url`` and register on it."""
        link = self.link_class(self)
        self._link = link
        try:
            link.transport = self.new_transport(link)
            await self._bounded(link.transport.open(), f"connecting to {self.url}")
            reply = await self._request("register", self._register_payload(), internal=True)
        except BaseException as error:
            self._drop(link)
            if isinstance(error, self.runtime.cancelled) and self._closed:
                raise ClientError(NOT_CONNECTED, "the client was closed while connecting") from None
            raise
        node_id: str = reply["payload"]["nodeId"]
        self.node_id = node_id
        self.log.info("registered with {url} as node {nodeId}", url=self.url, nodeId=node_id)
        return node_id

    def _register_payload(self) -> dict[str, Any]:
        return register_payload(
            self.name, token=self.token, capabilities=self.capabilities,
            agent_name=self.agent_name, metadata=self.metadata,
        )

    def _drop(self, link: Link) -> None:
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
        self.log.info("disconnected from {url}: {reason}", url=self.url, reason=reason, code=code)
        self._emit("disconnected", {"reason": reason or "connection lost", "code": code})
        if self._closed:
            return
        if self.reconnect:
            self._reconnecting = self.runtime.spawn(self._reconnect_loop(), "reconnecting failed")
        else:
            self._end_streams()

    async def _reconnect_loop(self) -> None:
        """Retry with backoff until registered and rejoined, closed, or refused for good."""
        attempt = 0
        last_error: str | None = None  # the code that refused the previous attempt
        try:
            while not self._closed:
                attempt += 1
                delay = self._backoff.delay(attempt)
                self._emit("reconnecting", {"attempt": attempt, "delay": delay, "lastError": last_error})
                await self.runtime.sleep(delay)
                try:
                    node_id = await self._establish()
                    rooms = await self._rejoin()
                except ClientError as error:
                    if self._link is not None:
                        self._drop(self._link)
                    if error.code in FINAL_ON_RECONNECT:
                        self.log.error("gateway refused to reconnect: {error}", error=error)
                        self._emit("disconnected", {"reason": str(error), "code": None, "error": error.code,
                                                    "final": True})
                        self._end_streams()
                        return
                    last_error = error.code
                    self.log.info("reconnect attempt {attempt} failed: {error}", attempt=attempt, error=error)
                    continue
                if self._link is None:
                    continue  # lost again while rejoining
                self._connected = True
                self.log.info("reconnected as node {nodeId}", nodeId=node_id, rooms=sorted(rooms))
                self._emit("reconnected", {"nodeId": node_id, "rooms": dict(rooms), "url": self.url})
                return
        except self.runtime.cancelled:
            if self._link is not None:
                self._drop(self._link)
        finally:
            self._reconnecting = None

    async def _rejoin(self) -> dict[str, str]:
        """Join every room this node was in again, by name (from its last position); drop those refused."""
        joined: dict[str, str] = {}
        for name in list(self.rooms):
            since = self.positions.get(name)
            payload = join_payload(name, True, self._descriptions.get(name), since)
            try:
                reply = await self._request("join_group", payload, internal=True)
            except ClientError as error:
                if error.code in CONNECTION_CODES:
                    raise
                self.log.warn("could not rejoin room {room}: {error}", room=name, error=error)
                continue
            ack = reply["payload"]
            joined[ack["groupName"]] = ack["groupId"]
            resumed = self.positions.resumed(ack["groupName"], since, ack, reply)
            if resumed is not None:
                self._emit(*resumed)
        for name in set(self.rooms) - set(joined):
            self._descriptions.pop(name, None)
        self.positions.keep(list(joined))
        self.rooms.clear()
        self.rooms.update(joined)
        return joined

    # -- requests ---------------------------------------------------------

    async def join(self, room: str, create: bool = True, description: str | None = None) -> dict[str, Any]:
        """Join ``room`` by name (creating it if ``create``); the ack payload."""
        reply = await self._request("join_group", join_payload(room, create, description))
        ack: dict[str, Any] = reply["payload"]
        self.rooms[ack["groupName"]] = ack["groupId"]
        self._descriptions[ack["groupName"]] = description
        self.positions.joined(ack["groupName"], ack, reply)
        return ack

    async def leave(self, room: str) -> dict[str, Any]:
        """Leave ``room`` (name or id); the ack payload."""
        reply = await self._request("leave_group", {"groupId": self.rooms.get(room, room)})
        ack: dict[str, Any] = reply["payload"]
        name = ack.get("groupName", room)
        self.rooms.pop(name, None)
        self._descriptions.pop(name, None)
        self.positions.forget(name)
        return ack

    async def broadcast(self, room: str, message: Any, key: str | None = None) -> int:
        """Send ``message`` to the other members of ``room``; how many there were.
        A retry with the same idempotency ``key`` is delivered only once."""
        payload = {"groupId": self.rooms.get(room, room), "message": message}
        extra: dict[str, Any] = {} if key is None else {"idempotencyKey": key}
        reply = await self._request("broadcast", payload, **extra)
        self.positions.sent(reply["payload"].get("groupName", room), reply["payload"])
        return int(reply["payload"]["recipients"])

    async def direct(self, node_id: str, message: Any) -> None:
        """Send ``message`` to one node."""
        await self._request("direct", {"targetNodeId": node_id, "message": message})

    async def ping(self) -> float:
        """Round trip to the gateway, in seconds."""
        started = self.runtime.now()
        await self._request("ping")
        return float(self.runtime.now() - started)

    async def who(self, room: str) -> list[dict[str, Any]]:
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
        reply = self.runtime.future()
        self._pending[message_id] = reply
        try:
            link.transport.send_text(text)
            answer: dict[str, Any] = await self._bounded(reply, f"waiting for the reply to {kind}")
        finally:
            self._pending.pop(message_id, None)
        if answer.get("type") == "error":
            raise ClientError.from_payload(answer.get("payload"))
        return answer

    async def _bounded(self, waiting: Awaitable[Any], what: str) -> Any:
        """Await ``waiting`` for at most ``request_timeout`` (then TIMEOUT)."""
        try:
            return await self.runtime.bounded(waiting, self.request_timeout)
        except TimeoutError:
            raise ClientError(
                TIMEOUT, f"{what}: no answer within {self.request_timeout:g} s"
            ) from None

    def _fail_pending(self, why: str) -> None:
        for waiting in list(self._pending.values()):
            self.runtime.reject(waiting, ClientError(CONNECTION_LOST, why))

    # -- what arrives -----------------------------------------------------

    def _text_received(self, text: str) -> None:
        try:
            envelope = json.loads(text)
        except ValueError:
            self.log.warn("dropped a frame that is not JSON from {url}", url=self.url)
            return
        if not isinstance(envelope, dict):
            self.log.warn("dropped a frame that is not a JSON object from {url}", url=self.url)
            return
        kind = envelope.get("type")
        if kind == "ping":
            self._answer_heartbeat(envelope)
            return
        message_id = envelope.get("messageId")
        if kind in ("ack", "error", "pong") and message_id is not None:
            waiting = self._pending.get(message_id) if isinstance(message_id, str) else None
            if waiting is not None:
                self.runtime.resolve(waiting, envelope)
                return
            self.log.debug("reply {kind} to a request given up on: {id}", kind=kind, id=message_id)
            return
        if kind in ("ack", "pong"):
            return
        if kind == "error":
            self.log.warn("gateway error: {payload}", payload=envelope.get("payload"))
        message = Message.from_envelope(envelope)
        if message.type == "broadcast":
            room = message.group_name or self._room_named(message.group_id)
            if room is not None and not self.positions.delivered(room, envelope):
                return  # delivered before a reconnect already
        self._deliver(message)

    def _room_named(self, group_id: str | None) -> str | None:
        for name, known in self.rooms.items():
            if known == group_id:
                return name
        return None

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
        if self._held is not None:
            if len(self._held) < HELD_FOR_FIRST_CONSUMER:
                self._held.append(message)
            return
        for listener in list(self._listeners):
            try:
                listener(message)
            except Exception:
                self.log.failure("message listener {listener!r} failed", listener=listener)
        for stream in list(self._streams):
            stream.push(message)

    # -- subscribers ------------------------------------------------------

    def add_listener(self, callback: MessageListener) -> Callable[[], None]:
        """Call ``callback`` with every delivered Message; returns its remover."""
        self._listeners.append(callback)
        for message in self._take_held():
            callback(message)
        return lambda: _discard(self._listeners, callback)

    def on_state(self, callback: StateListener) -> Callable[[], None]:
        """Call ``callback(event, details)`` on connection changes; returns its remover."""
        self._state_listeners.append(callback)
        return lambda: _discard(self._state_listeners, callback)

    def __aiter__(self) -> AsyncIterator[Message]:
        """Messages delivered from now on, in order; ends when the client closes."""
        stream = MessageStream(self.runtime)
        for message in self._take_held():
            stream.push(message)
        if self._closed:
            stream.end()
        else:
            self._streams.add(stream)
        return stream

    def _take_held(self) -> list[Message]:
        held, self._held = self._held or [], None
        return held

    def _emit(self, event: str, details: dict[str, Any]) -> None:
        for listener in list(self._state_listeners):
            try:
                listener(event, details)
            except Exception:
                self.log.failure("state listener {listener!r} failed", listener=listener)

    def _end_streams(self) -> None:
        for stream in list(self._streams):
            stream.end()
        self._streams = weakref.WeakSet()


def _discard(callbacks: list[Any], callback: Any) -> None:
    if callback in callbacks:
        callbacks.remove(callback)
