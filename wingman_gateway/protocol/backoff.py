"""Reconnect delays: exponential, capped, with jitter so clients spread out."""

from __future__ import annotations

import random

import attrs


@attrs.define
class Backoff:
    """Delay before reconnect attempt ``n`` (1-based), within [minimum, maximum].

    The upper bound doubles with each attempt; the delay is drawn uniformly
    below it ("full jitter" above the floor), so a gateway restart is not
    met by every client at the same instant.
    """

    minimum: float = 0.5
    maximum: float = 30.0
    rng: random.Random = attrs.field(factory=random.Random)

    def __attrs_post_init__(self) -> None:
        if self.minimum <= 0 or self.maximum < self.minimum:
            raise ValueError("need 0 < min_backoff <= max_backoff")

    def delay(self, attempt: int) -> float:
        ceiling = min(self.maximum, self.minimum * 2.0 ** min(max(attempt, 1), 60))
        return self.rng.uniform(self.minimum, ceiling)
