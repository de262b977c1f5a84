"""Rate limits: token buckets per connection, remembered per source.

A bucket holds up to ``burst`` tokens and gains ``rate`` tokens a second;
each message takes one (from a byte bucket: one per byte). An agent streaming an answer token by token stays
within the sustained rate, a runaway or hostile client is held to it.

A bucket's debt outlives its connection: when a connection closes with a
bucket that is not full again, the bucket is kept for its source address,
and the next connection from that address takes it over. Reconnecting
therefore never resets a budget; concurrent connections from one address
each have their own bucket.
"""

from __future__ import annotations

import re

import attrs

# "tcp:1.2.3.4:5", "tcp6:::1:5", "alice@1.2.3.4:5", "[::1]:5", "unix:/run/x.sock"
_SCHEME = re.compile(r"^[a-z][a-z0-9]*:(?=.)")


def source_of(peer: str) -> str:
    """The address part of a transport's printable peer (no scheme, user, port)."""
    _, _, address = peer.rpartition("@")
    address = _SCHEME.sub("", address, count=1)
    host, colon, port = address.rpartition(":")
    if colon and port.isdigit():
        address = host
    return address.strip("[]") or peer


class TokenBucket:
    """``burst`` tokens at most, ``rate`` more each second; one per message (or byte)."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def take(self, now: float, amount: float = 1) -> float:
        """Take ``amount`` tokens: 0 if there were as many, else the seconds until there are."""
        self._refill(now)
        if self.tokens >= amount:
            self.tokens -= amount
            return 0.0
        return (amount - self.tokens) / self.rate

    def full(self, now: float) -> bool:
        self._refill(now)
        return self.tokens >= self.burst


@attrs.define
class Budgets:
    """Hands out buckets and keeps the unrecovered ones of closed connections.

    At most ``keep`` buckets are kept; past that the oldest go first (a
    flood of sources can only forget debts, never grow memory).
    """

    rate: float
    burst: int
    keep: int = 4096
    _kept: dict[str, list[TokenBucket]] = attrs.field(factory=dict, init=False)
    _count: int = attrs.field(default=0, init=False)
    _next_sweep: float = attrs.field(default=0.0, init=False)

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def open(self, source: str, now: float) -> TokenBucket:
        """The bucket for a new connection from ``source``."""
        kept = self._kept.get(source)
        if kept:
            self._count -= 1
            bucket = kept.pop()
            if not kept:
                del self._kept[source]
            return bucket
        return TokenBucket(self.rate, self.burst, now)

    def close(self, source: str, bucket: TokenBucket, now: float) -> None:
        """A connection from ``source`` ended; remember its bucket if in debt."""
        if bucket.full(now):
            return
        self._kept.setdefault(source, []).append(bucket)
        self._count += 1
        while self._count > self.keep:
            oldest = next(iter(self._kept))
            self._count -= len(self._kept.pop(oldest))
        if self._count > self.keep // 2 and now >= self._next_sweep:
            self._next_sweep = now + 1.0
            self._forget_recovered(now)

    def _forget_recovered(self, now: float) -> None:
        for source in list(self._kept):
            left = [bucket for bucket in self._kept[source] if not bucket.full(now)]
            self._count -= len(self._kept[source]) - len(left)
            if left:
                self._kept[source] = left
            else:
                del self._kept[source]

    def kept(self) -> int:
        """How many buckets of closed connections are remembered."""
        return self._count
