"""Room messages of a cluster: published through Redis, delivered from Redis.

Part of ``ClusterRooms`` (it inherits these methods). A room message is
numbered, kept and published by one script (``history.RedisHistory``) on
the room's channel; every gateway with members of the room subscribes to
that channel (from its first local member of the room to its last) and
hands each frame to its own members, the sender's gateway included, so
every gateway delivers in Redis' order. A frame is ``SENDER OFFSET
ENVELOPE``: the sending node's id (``-`` for the gateway itself), which
its gateway leaves out, and the offset (``-`` when unnumbered), so a
joining node's held frames are told apart from what it recovered without
reading the JSON.

A node that joins is a member at once; its gateway makes sure it is
subscribed to the room's channel, then reads the room's position (and,
with ``since``, what came after it) from Redis, holding the frames that
arrive meanwhile for that node. The join ack and the recovered messages
go first, then the held frames past the last offset sent, then live ones.

While Redis is unreachable a room message is handed to this gateway's
members only, without a position; once Redis is back the room's numbering
gets a hole, so nobody resumes across what was sent meanwhile.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure

from wingman_gateway.cluster.history import UNAVAILABLE, RedisHistory
from wingman_gateway.cluster.placement import Placement
from wingman_gateway.connection import Outbound
from wingman_gateway.envelope import encode
from wingman_gateway.events import Events
from wingman_gateway.history import HISTORY_OFF, Position, Published, Recovery
from wingman_gateway.logs import get_logger
from wingman_gateway.presence import Presence
from wingman_gateway.state import Node, Room

log = get_logger("wingman_gateway.cluster.messages")

# Frames held for a node while its join reads the room's position: (offset or None, message).
Held = list[tuple[int | None, Outbound]]


class RoomMessages:
    """The room-message side of ``ClusterRooms``."""

    history: RedisHistory
    placement: Placement
    presence: Presence
    events: Events
    link: Any
    forwarded: int
    unreceived: int
    _local: dict[str, Node]

    def _tally(self, forwarded: int, lost: int) -> None:
        raise NotImplementedError

    def _lost(self, count: int) -> None:
        raise NotImplementedError

    def messages_init(self) -> None:
        # room id -> the nodes joining it whose frames are held
        self._joining: dict[str, dict[Node, Held]] = {}
        # room id -> nodes that joined with their last offset sent: a frame
        # numbered up to it may still come (published before the position was
        # read, but arriving after the answer, on the other connection).
        self._floors: dict[str, dict[Node, int]] = {}
        self._channels: dict[bytes, str] = {}  # room channel -> room id
        self._holes: set[str] = set()  # rooms with messages sent unnumbered (Redis down)

    # -- subscriptions ---------------------------------------------------------

    def subscribe_room(self, room_id: str) -> None:
        """The room's first member here: follow its channel."""
        channel = self.history.channel(room_id)
        self._channels[channel.encode("ascii")] = room_id
        if self.link is not None:
            self.link.subscribe(channel)

    def unsubscribe_room(self, room_id: str) -> None:
        """No member of the room left here."""
        channel = self.history.channel(room_id)
        self._channels.pop(channel.encode("ascii"), None)
        self._floors.pop(room_id, None)
        if self.link is not None:
            self.link.unsubscribe(channel)

    def room_of(self, channel: bytes) -> str | None:
        return self._channels.get(channel)

    # -- publishing ------------------------------------------------------------

    def publish(
        self, room: Room, head: dict[str, Any], payload: str, exclude: Node | None, key: str | None
    ) -> defer.Deferred[Published]:
        spread = self.placement.spread.get(room.id) or {}
        here = self.placement.here.get(room.id, ())
        recipients = len(here) - (exclude in here) + sum(spread.values())
        # Encoded as ``splice`` does, in two parts: the script puts offset
        # and epoch between them (where MemoryHistory's encoding has them).
        first = encode(head)[:-1]
        rest = b',"payload":' + payload.encode("utf-8") + b"}"
        encoded = first + rest
        link = self.link
        sent = None
        if link is not None and link.up:
            sender = exclude.node_id if exclude is not None else "-"
            sent = self.history.publish(room.id, first, rest, str(sender), recipients, key)
        if sent is None:
            return defer.succeed(self._unnumbered(room, encoded, exclude, len(spread)))
        return sent.addCallbacks(
            self._numbered, self._not_numbered,
            callbackArgs=(recipients, len(spread)), errbackArgs=(room, encoded, exclude, len(spread)),
        )

    def _numbered(self, reply: list[Any], recipients: int, gateways: int) -> Published:
        offset, epoch, receivers, seen = reply
        if seen is not None:  # a repeated idempotency key: the first send's figures
            label, first_epoch, count = _text(seen).split(" ")
            position = Position(int(label), first_epoch) if label != "-" else None
            return Published(int(count), position, duplicate=True)
        self.forwarded += gateways
        self._tally(gateways, 0)
        if gateways and int(receivers) == 0:
            self.unreceived += 1
        position = Position(int(offset), _text(epoch)) if offset is not None else None
        return Published(recipients, position)

    def _not_numbered(
        self, failure: Failure, room: Room, encoded: bytes, exclude: Node | None, gateways: int
    ) -> Published:
        log.warn("cluster: publishing to room {room} failed ({why}); delivered here only",
                 room=room.name, why=failure.getErrorMessage())
        published = self._unnumbered(room, encoded, exclude, gateways)
        if self.link is not None and self.link.up:
            self.fill_holes()  # Redis answers, but did not number it: a hole at once
        return published

    def _unnumbered(self, room: Room, encoded: bytes, exclude: Node | None, gateways: int) -> Published:
        """Redis cannot be had: this gateway's members only, without a position."""
        if gateways:
            self._lost(gateways)
            self._tally(0, gateways)
        if self.history.settings.enabled:
            self._holes.add(room.id)
        self.presence.flush(room.id)
        return Published(self._hand(room.id, Outbound(encoded), exclude), None)

    def fill_holes(self) -> None:
        """Redis is back: rooms whose messages went out unnumbered get a hole in their numbering."""
        holes, self._holes = self._holes, set()
        for room_id in holes:
            self.history.hole(room_id)

    # -- delivering ------------------------------------------------------------

    def from_room(self, room_id: str, frame: bytes) -> None:
        """A frame from the room's channel: to this gateway's members but its sender."""
        if not self.placement.here.get(room_id):
            return
        sender, _, rest = frame.partition(b" ")
        label, _, data = rest.partition(b" ")
        exclude = self._local.get(sender.decode("ascii", "replace")) if sender != b"-" else None
        self.presence.flush(room_id)  # notices of this turn go first
        joining, floors = self._joining.get(room_id), self._floors.get(room_id)
        if not joining and not floors:
            self._hand(room_id, Outbound(data), exclude)
            return
        offset = int(label) if label != b"-" else None
        skip: set[Node] = set()
        for node, held in (joining or {}).items():
            if node is not exclude:
                held.append((offset, Outbound(data)))
                skip.add(node)
        if floors and offset is not None:
            for node, floor in list(floors.items()):
                if offset <= floor:
                    skip.add(node)  # it had this one already, with its join
                else:
                    del floors[node]  # the channel is past it: nothing older will come
            if not floors:
                del self._floors[room_id]
        self._hand(room_id, Outbound(data), exclude, skip)

    def _hand(
        self, room_id: str, message: Outbound, exclude: Node | None, skip: set[Node] | None = None
    ) -> int:
        """``message`` to this gateway's members of the room but ``exclude`` and ``skip`` (one event)."""
        members = self.placement.here.get(room_id, ())
        excluded = False
        for member in members:
            if member is exclude:
                excluded = True
            elif not skip or member not in skip:
                member.send(message)
        if members:
            transports = self.placement.transports[room_id]
            if skip:
                transports = dict(transports)
                for member in skip:
                    name = member.conn.transport_name
                    transports[name] = transports.get(name, 0) - (member is not exclude)
            self.events.emit(
                "delivered", transports,
                exclude.conn.transport_name if exclude is not None and excluded else None,
                len(message.data),
            )
        return len(members) - excluded

    # -- joining ---------------------------------------------------------------

    def recover(self, room: Room, node: Node, since: Position | None) -> defer.Deferred[Recovery]:
        settings = self.history.settings
        link = self.link
        if link is None or not link.up:
            reason = UNAVAILABLE if settings.enabled else HISTORY_OFF
            return defer.succeed(Recovery(None, False, reason) if since is not None else Recovery(None))
        answered: defer.Deferred[Recovery] = defer.Deferred()
        joining = self._joining.setdefault(room.id, {})
        joining[node] = []
        subscribed = link.subscribe(self.history.channel(room.id))
        if subscribed is None:
            subscribed = defer.succeed(None)

        def read(_: Any) -> Any:
            if not settings.enabled:
                return Recovery(None, False, HISTORY_OFF) if since is not None else Recovery(None)
            reading = self.history.recover(room.id, since)
            if reading is None:
                return Recovery(None, False, UNAVAILABLE) if since is not None else Recovery(None)
            return reading

        def failed(failure: Failure) -> Recovery:
            log.warn("cluster: reading room {room}'s history failed: {why}",
                     room=room.name, why=failure.getErrorMessage())
            return Recovery(None, False, UNAVAILABLE) if since is not None else Recovery(None)

        subscribed.addCallback(read).addErrback(failed).addCallback(
            self._recovered, room, node, answered
        )
        return answered

    def _recovered(self, recovery: Recovery, room: Room, node: Node, answered: defer.Deferred[Recovery]) -> None:
        joining = self._joining.get(room.id, {})
        held = joining.pop(node, [])
        if not joining:
            self._joining.pop(room.id, None)
        answered.callback(recovery)  # the join ack and the recovered messages
        if node.closed or node.rooms.get(room.id) is not room:
            return
        last = recovery.position.offset if recovery.position is not None else None
        for offset, message in held:
            if offset is None or last is None or offset > last:
                node.send(message)
                self.events.emit("delivered", {node.conn.transport_name: 1}, None, len(message.data))
                if offset is not None:
                    last = offset
        if last is not None:
            self._floors.setdefault(room.id, {})[node] = last


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)

