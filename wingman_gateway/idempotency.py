"""Idempotent sends: a retried ``broadcast`` or ``direct`` is delivered once.

A node may give a send an ``idempotencyKey``. The key is remembered with
its scope (the room for a broadcast, the target node for a direct), not
with the sender, so a retry after a reconnect, under a new node id, is
still recognised. Keys are kept for ``window`` seconds and at most
``capacity`` of them (the oldest go first), so memory stays bounded.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from twisted.internet.interfaces import IReactorTime

from wingman_gateway import errors
from wingman_gateway.envelope import Envelope
from wingman_gateway.errors import GatewayError

MAX_KEY_LENGTH = 200
WINDOW = 600.0  # seconds a key is remembered
CAPACITY = 10000  # keys remembered at most, gateway-wide

Scope = tuple[str, str, str]


def key_of(envelope: Envelope) -> str | None:
    """The envelope's ``idempotencyKey``, checked; None when absent."""
    key = envelope.fields.get("idempotencyKey")
    if key is None:
        return None
    if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_LENGTH:
        raise GatewayError(
            errors.INVALID_REQUEST,
            f"'idempotencyKey' must be a string of 1 to {MAX_KEY_LENGTH} characters",
        )
    return key


class SentKeys:
    """The recent idempotency keys and what their first send was acked with."""

    def __init__(self, clock: IReactorTime, window: float = WINDOW, capacity: int = CAPACITY) -> None:
        self.clock = clock
        self.window = window
        self.capacity = capacity
        self._keys: OrderedDict[Scope, tuple[float, dict[str, Any]]] = OrderedDict()

    def outcome(self, scope: Scope) -> dict[str, Any] | None:
        """The ack fields of the first send with this key, if it is remembered."""
        self._expire()
        found = self._keys.get(scope)
        return None if found is None else found[1]

    def remember(self, scope: Scope, outcome: dict[str, Any]) -> None:
        self._keys[scope] = (self.clock.seconds(), outcome)
        while len(self._keys) > self.capacity:
            self._keys.popitem(last=False)

    def _expire(self) -> None:
        deadline = self.clock.seconds() - self.window
        while self._keys:
            at, _ = next(iter(self._keys.values()))
            if at > deadline:
                return
            self._keys.popitem(last=False)

    def __len__(self) -> int:
        return len(self._keys)
