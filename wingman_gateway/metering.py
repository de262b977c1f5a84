"""Metering before decoding: every message takes from its connection's buckets.

Three buckets per connection (see ratelimit.py): messages, heartbeat
messages (``ping``/``pong``, so a node streaming at its limit still answers
the heartbeat) and bytes. The byte bucket is what bounds decoding: a
megabyte of small JSON objects costs tens of milliseconds to check and
decode, so a count of messages alone lets one connection fill a core with
large legal messages. Its size is taken from the frame as received.
"""

from __future__ import annotations

import attrs

from wingman_gateway import errors
from wingman_gateway.envelope import peek_message_id
from wingman_gateway.errors import GatewayError
from wingman_gateway.limits import Limits
from wingman_gateway.ratelimit import Budgets
from wingman_gateway.state import Node

# Heartbeat messages have a bucket of their own; a refused pong is dropped
# without an answer.
HEARTBEAT = frozenset({"ping", "pong"})


@attrs.define
class Meters:
    """The budgets of every source, and the check each message passes."""

    limits: Limits
    messages: Budgets = attrs.field(init=False)
    heartbeats: Budgets = attrs.field(init=False)
    traffic: Budgets = attrs.field(init=False)  # bytes

    def __attrs_post_init__(self) -> None:
        limits = self.limits
        self.messages = Budgets(limits.message_rate, limits.message_burst)
        self.heartbeats = Budgets(limits.message_rate, limits.message_burst)
        # Rate limits off (a message rate of 0) means all of them, bytes included.
        byte_rate = limits.byte_rate if limits.message_rate > 0 else 0.0
        self.traffic = Budgets(byte_rate, limits.byte_burst)

    def attach(self, node: Node, now: float) -> None:
        """Give a new connection its buckets (taken over from its source's debts)."""
        if self.messages.enabled:
            node.budget = self.messages.open(node.source, now)
            node.heartbeat_budget = self.heartbeats.open(node.source, now)
        if self.traffic.enabled:
            node.byte_budget = self.traffic.open(node.source, now)

    def detach(self, node: Node, now: float) -> None:
        """The connection closed: a bucket in debt stays with its source."""
        if node.budget is not None and node.heartbeat_budget is not None:
            self.messages.close(node.source, node.budget, now)
            self.heartbeats.close(node.source, node.heartbeat_budget, now)
        if node.byte_budget is not None:
            self.traffic.close(node.source, node.byte_budget, now)

    def admit(self, node: Node, kind: str | None, data: bytes | str, now: float) -> bool:
        """Take this message from the buckets, or raise ``RATE_LIMITED``.

        ``kind`` is the type when the message was small enough to be read
        first, else None. False: a refused ``pong``, dropped unanswered.
        """
        bucket = node.heartbeat_budget if kind in HEARTBEAT else node.budget
        if bucket is not None:
            wait = bucket.take(now)
            if wait:
                if kind == "pong":
                    return False
                raise self._refusal(wait, data, "messages", self.limits.message_rate,
                                    self.limits.message_burst, {})
        if node.byte_budget is not None:
            wait = node.byte_budget.take(now, len(data))
            if wait:
                if kind == "pong":
                    return False
                raise self._refusal(wait, data, "bytes", self.limits.byte_rate,
                                    self.limits.byte_burst, {"size": len(data)})
        return True

    def _refusal(
        self, wait: float, data: bytes | str, unit: str, rate: float, burst: int,
        more: dict[str, int],
    ) -> GatewayError:
        prefix = "" if unit == "messages" else "byte "
        keys = ("rate", "burst") if unit == "messages" else ("byteRate", "byteBurst")
        return GatewayError(
            errors.RATE_LIMITED,
            f"{prefix}rate limit of {_number(rate)} {unit} per second (bursts of {burst}) exceeded",
            details={"retryAfterMs": int(wait * 1000) + 1, keys[0]: rate, keys[1]: burst, **more},
            message_id=peek_message_id(data),
        )


def _number(value: float) -> str:
    """``2097152`` rather than ``2.09715e+06``; a fractional rate as it is."""
    return str(int(value)) if value == int(value) else f"{value:g}"
