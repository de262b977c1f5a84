"""Requests about rooms: find one by id or name, join, leave.

Part of the Router (it inherits these handlers); kept apart so each module
stays readable. Room names are unique, and an id and a name that disagree
are refused, so a room can never be split in two.
"""

from __future__ import annotations

from typing import Any

from wingman_gateway import errors, fields
from wingman_gateway.connection import Outbound
from wingman_gateway.envelope import Envelope
from wingman_gateway.errors import GatewayError
from wingman_gateway.history import Recovery, parse_since
from wingman_gateway.limits import Limits
from wingman_gateway.rooms import IRooms
from wingman_gateway.state import Node, Room

STRATEGIES = ("parallel", "sequential")


class RoomRequests:
    """The room handlers; the Router provides ``rooms``, ``limits``, ``_registered`` and ``_ack``."""

    rooms: IRooms
    limits: Limits

    def _registered(self, node: Node) -> str:
        raise NotImplementedError

    def _ack(self, node: Node, envelope: Envelope, payload: dict[str, Any]) -> None:
        raise NotImplementedError

    def _find_room(self, envelope: Envelope) -> Room:
        """The room a request names by id or by name (payload before envelope)."""
        group_id, group_name = self._room_names(envelope)
        room = self._lookup(group_id, group_name)
        if room is None:
            wanted = group_id if group_id is not None else group_name
            raise GatewayError(errors.GROUP_NOT_FOUND, f"no room {wanted!r}")
        return room

    def _room_names(self, envelope: Envelope) -> tuple[str | None, str | None]:
        sources = (envelope.payload, envelope.fields)
        group_id = fields.first_text(sources, "groupId", self.limits.max_reference_length)
        group_name = fields.first_text(sources, "groupName", self.limits.max_name_length)
        if group_id is None and group_name is None:
            raise GatewayError(errors.INVALID_REQUEST, "'groupId' or 'groupName' is required")
        return group_id, group_name

    def _lookup(self, group_id: str | None, group_name: str | None) -> Room | None:
        """The room named, or None; an id and a name that disagree are refused.

        A ``groupId`` may be a room's id or its name (clients give names
        where ids are expected). With a ``groupName`` too, both must name
        the same room, or no room at all.
        """
        by_id = self.rooms.find(group_id) if group_id is not None else None
        by_name = self.rooms.find_by_name(group_name) if group_name is not None else None
        if group_id is None:
            return by_name
        if group_name is not None and by_id is not by_name:
            raise GatewayError(
                errors.INVALID_REQUEST,
                f"'groupId' {group_id!r} and 'groupName' {group_name!r} do not name the same room",
            )
        return by_id

    def _join_group(self, node: Node, envelope: Envelope) -> None:
        node_id = self._registered(node)
        payload = envelope.payload
        limits = self.limits
        create = fields.flag(payload, "createIfNotExists", False)
        description = fields.text(payload, "description", limits.max_description_length)
        strategy = fields.choice(payload, "strategy", STRATEGIES)
        since = parse_since(payload)
        group_id, group_name = self._room_names(envelope)
        room = self._lookup(group_id, group_name)
        created = False
        if room is None:
            name = group_name
            if not create or name is None:
                raise GatewayError(errors.GROUP_NOT_FOUND, f"no room {group_id or group_name!r}")
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
        elif node_id not in room.members:
            self._check_may_join(node, room.name)
            self._check_room_quota(node)
        # A new room and its first member come together: no empty room is left.
        self.rooms.join(room, node)
        # The ack, then what was missed, then live messages (on one gateway in
        # the same turn as the join; in a cluster once Redis answered).
        recovering = self.rooms.recover(room, node, since)
        recovering.addCallback(self._joined, node, envelope, room, created)

    def _joined(self, recovery: Recovery, node: Node, envelope: Envelope, room: Room, created: bool) -> None:
        if node.closed:
            return  # gone while the room's position was read
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
                **recovery.fields(),
            },
        )
        if node.rooms.get(room.id) is room:  # not left meanwhile
            for data in recovery.messages:
                node.send(Outbound(data))

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
