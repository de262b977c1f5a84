"""Idempotent sends: a retried ``broadcast`` or ``direct`` is delivered once.

A node may give a send an ``idempotencyKey``. The key is remembered with
its scope (the room for a broadcast, the target node for a direct), not
with the sender, so a retry after a reconnect, under a new node id, is
still recognised. Keys are kept for ``window`` seconds and at most
``capacity`` of them (the oldest go first), so memory stays bounded.

A key is remembered as soon as its send starts (``hold``): a repeat that
arrives while the first is still under way (a broadcast waits for Redis
in a cluster) is not sent again, and is answered once the first send's
outcome is known.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable

from twisted.internet.interfaces import IReactorTime

from wingman_gateway import errors
from wingman_gateway.envelope import Envelope
from wingman_gateway.errors import GatewayError

MAX_KEY_LENGTH = 200
WINDOW = 600.0  # seconds a key is remembered
CAPACITY = 10000  # keys remembered at most, gateway-wide

Scope = tuple[str, str, str]
Waiters = list[Callable[[dict[str, Any]], None]]


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
        # A key's outcome (the first send's ack fields), or, while that send
        # is under way, who waits for it.
        self._keys: OrderedDict[Scope, tuple[float, dict[str, Any] | Waiters]] = OrderedDict()

    def outcome(self, scope: Scope) -> dict[str, Any] | Waiters | None:
        """The ack fields of the first send with this key, the list of those
        waiting for them while it is under way, or None for a new key."""
        self._expire()
        found = self._keys.get(scope)
        return None if found is None else found[1]

    def hold(self, scope: Scope) -> None:
        """A send with this key has started."""
        self._keys[scope] = (self.clock.seconds(), [])
        self._bound()

    def remember(self, scope: Scope, outcome: dict[str, Any]) -> None:
        """The send with this key is done: those waiting are answered."""
        found = self._keys.get(scope)
        self._keys[scope] = (found[0] if found is not None else self.clock.seconds(), outcome)
        self._bound()
        if found is not None and isinstance(found[1], list):
            for waiter in found[1]:
                waiter(outcome)

    def forget(self, scope: Scope) -> None:
        """The send with this key did not go out."""
        self._keys.pop(scope, None)

    def _bound(self) -> None:
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
