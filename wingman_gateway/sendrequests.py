"""Sends: ``broadcast`` to a room and ``direct`` to a node, with their idempotency keys.

Part of the Router (it inherits these handlers); kept apart so each module
stays readable. A broadcast's outcome comes from the rooms seam as a
Deferred (at once on one gateway, from Redis in a cluster); its ack is sent
when it fires, and a send repeating a key that is still under way is
answered when the first one's outcome is known.
"""

from __future__ import annotations

from typing import Any

from wingman_gateway import errors, fields
from wingman_gateway.connection import Outbound
from wingman_gateway.envelope import Envelope, splice
from wingman_gateway.errors import GatewayError
from wingman_gateway.history import Published
from wingman_gateway.idempotency import SentKeys, key_of
from wingman_gateway.limits import Limits
from wingman_gateway.rooms import IRooms
from wingman_gateway.state import Node, Room


class SendRequests:
    """The send handlers; the Router provides ``rooms``, ``limits``, ``sent_keys``,
    ``now_ms``, ``_registered``, ``_find_room`` and ``_ack``."""

    rooms: IRooms
    limits: Limits
    sent_keys: SentKeys

    def now_ms(self) -> int:
        raise NotImplementedError

    def _registered(self, node: Node) -> str:
        raise NotImplementedError

    def _find_room(self, envelope: Envelope) -> Room:
        raise NotImplementedError

    def _ack(self, node: Node, envelope: Envelope, payload: dict[str, Any]) -> None:
        raise NotImplementedError

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
        scope = self._sent_before(node, envelope, "room", room.id)
        if scope is None:
            return
        head = {
            "type": "broadcast",
            "nodeId": node_id,
            "fromNodeId": node_id,
            "fromName": node.name,
            "groupId": room.id,
            "groupName": room.name,
            "timestamp": self.now_ms(),
        }
        published = self.rooms.publish(room, head, message, node, scope[2] if scope else None)
        published.addCallback(self._published, room, node, envelope, scope)

    def _published(self, published: Published, room: Room, node: Node, envelope: Envelope, scope: Any) -> None:
        """A broadcast's outcome is known (at once on one gateway; from Redis in a cluster)."""
        outcome = published.fields(room)
        if published.duplicate:
            if scope:
                self.sent_keys.remember(scope, outcome)
            if envelope.message_id is not None and not node.closed:
                self._ack(node, envelope, {**outcome, "duplicate": True})
            return
        self._sent(node, envelope, scope, outcome)

    def _direct(self, node: Node, envelope: Envelope) -> None:
        node_id = self._registered(node)
        target_id = fields.first_text(
            (envelope.payload, envelope.fields), "targetNodeId", self.limits.max_reference_length
        )
        if target_id is None:
            raise GatewayError(errors.INVALID_REQUEST, "'targetNodeId' is required")
        message = self._message_text(envelope)
        if node.grant is not None and node.grant.rooms is not None:
            # A room-scoped node reaches only the members of its rooms.
            target = self.rooms.node(target_id)
            if target is None or not node.rooms.keys() & target.rooms.keys():
                raise GatewayError(errors.NODE_NOT_FOUND, f"no node {target_id!r} in your rooms")
        scope = self._sent_before(node, envelope, "node", target_id)
        if scope is None:
            return
        head = {
            "type": "direct",
            "nodeId": node_id,
            "fromNodeId": node_id,
            "fromName": node.name,
            "targetNodeId": target_id,
            "timestamp": self.now_ms(),
        }
        try:
            if not self.rooms.send_to(target_id, Outbound(splice(head, "payload", message))):
                raise GatewayError(errors.NODE_NOT_FOUND, f"no node {target_id!r}")
        except GatewayError:
            if scope:
                self.sent_keys.forget(scope)  # not sent: a retry may try again
            raise
        self._sent(node, envelope, scope, {"targetNodeId": target_id, "delivered": True})

    def _sent_before(self, node: Node, envelope: Envelope, kind: str, name: str) -> Any:
        """The send's idempotency scope (``()`` without a key), or None when
        it repeats a remembered send: then it is acked as a duplicate."""
        key = key_of(envelope)
        if key is None:
            return ()
        scope = (kind, name, key)
        outcome = self.sent_keys.outcome(scope)
        if outcome is None:
            self.sent_keys.hold(scope)
            return scope
        if envelope.message_id is not None:
            def duplicate(outcome: dict[str, Any]) -> None:
                if not node.closed:
                    self._ack(node, envelope, {**outcome, "duplicate": True})

            if isinstance(outcome, list):
                outcome.append(duplicate)  # the first send is under way: answered when it is done
            else:
                duplicate(outcome)
        return None

    def _sent(self, node: Node, envelope: Envelope, scope: Any, outcome: dict[str, Any]) -> None:
        """A send went out: remember its key, ack it when asked to."""
        if scope:
            self.sent_keys.remember(scope, outcome)
        if envelope.message_id is not None and not node.closed:
            self._ack(node, envelope, dict(outcome))
