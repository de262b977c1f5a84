"""Room history of a cluster, kept in Redis: where each room's order is decided.

Every room message of a cluster is published by one Lua script, so that
numbering, keeping and sending it are one step for Redis: the script
takes the room's next offset (a counter in the room's order hash, beside
its epoch), puts ``offset`` and ``epoch`` into the envelope the gateway
encoded (sent in two parts, around where they go), adds it to the room's
stream under the id ``OFFSET-0`` (``MAXLEN`` exactly ``--history-size``),
refreshes the keys' expiry, and publishes the finished frame once on the
room's channel, where every gateway with members of the room (the
sender's too) takes it from. Gateways thus deliver in Redis' order, and
offsets and delivery order agree everywhere.

The epoch is made by the script when the room has none (a gateway sends a
fresh candidate with each call): it changes only when Redis lost the
room's order (expired after ``ORDER_TTL`` without use, a room closed, a
Redis restart without persistence). Stream entries carry Redis' time
(``t``, ms); an entry older than ``--history-ttl`` is never replayed, and
the stream itself expires ``--history-ttl`` after the last message.

With ``--history-size 0`` the same script numbers and keeps nothing: it
only publishes (and checks the idempotency key).
"""

from __future__ import annotations

import secrets
from typing import Any, Callable

from twisted.internet import defer
from twisted.python.failure import Failure

from wingman_gateway.cluster.wire import Names
from wingman_gateway.history import (
    OTHER_EPOCH, TOO_OLD, UNKNOWN_OFFSET, HistorySettings, Position, Recovery,
)
from wingman_gateway.idempotency import WINDOW
from wingman_gateway.logs import get_logger

log = get_logger("wingman_gateway.cluster.history")

# RedisLink.execute: one command's Deferred reply, or None while Redis is unreachable.
Execute = Callable[..., "defer.Deferred[Any] | None"]

# Why ``since`` could not be resumed while Redis is unreachable.
UNAVAILABLE = "history unavailable"
# How long a room's order (its counter and epoch) outlives its last use: a
# room quiet for longer than --history-ttl keeps its epoch, so a node that
# saw everything resumes with nothing missed instead of a false gap.
ORDER_TTL = 24 * 3600.0

# KEYS: order hash, stream, idempotency key (or the order hash again when none).
# ARGV: epoch candidate, size, stream ttl ms, order ttl ms, channel, sender,
#       head (before offset/epoch), rest (after), recipients, key window ms, keyed (0/1).
# Returns {offset or false, epoch or false, receivers, duplicate outcome or false}.
PUBLISH = r"""
local order, stream = KEYS[1], KEYS[2]
if ARGV[11] == '1' then
  local seen = redis.call('GET', KEYS[3])
  if seen then return {false, false, 0, seen} end
end
local size = tonumber(ARGV[2])
local offset, epoch = false, false
local data = ARGV[7] .. ARGV[8]
local label = '-'
if size > 0 then
  epoch = redis.call('HGET', order, 'epoch')
  if not epoch then
    epoch = ARGV[1]
    redis.call('DEL', order, stream)
    redis.call('HSET', order, 'epoch', epoch)
  end
  offset = redis.call('HINCRBY', order, 'last', 1)
  label = tostring(offset)
  data = ARGV[7] .. ',"offset":' .. label .. ',"epoch":"' .. epoch .. '"' .. ARGV[8]
  local now = redis.call('TIME')
  local ms = tostring(tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000))
  redis.call('XADD', stream, 'MAXLEN', size, label .. '-0', 'd', data, 't', ms)
  redis.call('PEXPIRE', stream, ARGV[3])
  redis.call('PEXPIRE', order, ARGV[4])
end
local receivers = redis.call('PUBLISH', ARGV[5], ARGV[6] .. ' ' .. label .. ' ' .. data)
if ARGV[11] == '1' then
  redis.call('SET', KEYS[3], label .. ' ' .. (epoch or '-') .. ' ' .. ARGV[9], 'PX', ARGV[10])
end
return {offset, epoch, receivers, false}
"""

# KEYS: order hash, stream. ARGV: epoch candidate, order ttl ms, since offset (-1: none).
# Returns {epoch, last, now ms, entries after since (XRANGE reply)}.
RECOVER = r"""
local order, stream = KEYS[1], KEYS[2]
local epoch = redis.call('HGET', order, 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', order, stream)
  redis.call('HSET', order, 'epoch', epoch, 'last', 0)
end
redis.call('PEXPIRE', order, ARGV[2])
local last = tonumber(redis.call('HGET', order, 'last') or '0')
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local since = tonumber(ARGV[3])
local entries = {}
if since >= 0 and since < last then
  entries = redis.call('XRANGE', stream, tostring(since + 1) .. '-0', '+')
end
return {epoch, last, ms, entries}
"""

# A hole in a room's numbering (KEYS: order hash): messages were sent while
# Redis could not number them, so nothing can be resumed across them.
HOLE = r"""
if redis.call('HEXISTS', KEYS[1], 'epoch') == 1 then
  return redis.call('HINCRBY', KEYS[1], 'last', 1)
end
return false
"""


class Script:
    """A Lua script loaded once (SCRIPT LOAD), run by its digest (EVALSHA), sent whole when Redis lost it."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.digest: str | None = None

    def run(self, execute: Execute, keys: list[str], args: list[Any]) -> defer.Deferred[Any] | None:
        """The script's reply; None when there is no connection to send it on."""
        if self.digest is None:
            loading = execute("SCRIPT", "LOAD", self.source)
            if loading is None:
                return None
            loading.addCallback(self._loaded)
            loading.addErrback(lambda _: None)
            return self._eval(execute, keys, args)
        sent = execute("EVALSHA", self.digest, len(keys), *keys, *args)
        if sent is None:
            return None
        return sent.addErrback(self._missing, execute, keys, args)

    def _loaded(self, digest: Any) -> None:
        self.digest = digest.decode("ascii") if isinstance(digest, bytes) else str(digest)

    def _eval(self, execute: Execute, keys: list[str], args: list[Any]) -> defer.Deferred[Any] | None:
        return execute("EVAL", self.source, len(keys), *keys, *args)

    def _missing(self, failure: Failure, execute: Execute, keys: list[str], args: list[Any]) -> Any:
        if "NOSCRIPT" not in failure.getErrorMessage():
            return failure
        self.digest = None  # Redis restarted or flushed its scripts: loaded again next time
        again = self._eval(execute, keys, args)
        return failure if again is None else again


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class RedisHistory:
    """Room order and history in Redis, through the cluster's command connection."""

    def __init__(self, settings: HistorySettings, names: Names, execute: Execute) -> None:
        self.settings = settings
        self.names = names
        self.execute = execute  # RedisLink.execute: a Deferred, or None while Redis is unreachable
        self._publish = Script(PUBLISH)
        self._recover = Script(RECOVER)
        self._hole = Script(HOLE)

    def keys(self, room_id: str) -> list[str]:
        """The room's order hash and stream."""
        return [self.names.order(room_id), self.names.history(room_id)]

    def channel(self, room_id: str) -> str:
        return self.names.room(room_id)

    def publish(
        self, room_id: str, head: bytes, rest: bytes, sender: str, recipients: int, key: str | None,
    ) -> defer.Deferred[Any] | None:
        """Number, keep and publish one message; a Deferred of (offset, epoch,
        receivers, duplicate) or None while Redis is unreachable."""
        settings = self.settings
        order, stream = self.keys(room_id)
        marker = self.names.sent(room_id, key) if key is not None else order
        return self._publish.run(self.execute, [order, stream, marker], [
            secrets.token_hex(8), settings.size, int(settings.ttl * 1000), int(max(ORDER_TTL, settings.ttl) * 1000),
            self.channel(room_id), sender, head, rest, recipients, int(WINDOW * 1000),
            1 if key is not None else 0,
        ])

    def recover(self, room_id: str, since: Position | None) -> defer.Deferred[Recovery] | None:
        """The room's position and, with ``since``, what came after it; None while Redis is unreachable."""
        if not self.settings.enabled:
            return defer.succeed(Recovery(None))  # not used: the rooms answer "history off" themselves
        read = self._recover.run(self.execute, self.keys(room_id), [
            secrets.token_hex(8), int(max(ORDER_TTL, self.settings.ttl) * 1000),
            since.offset if since is not None else -1,
        ])
        if read is None:
            return None
        return read.addCallback(self._recovered, since)

    def _recovered(self, reply: list[Any], since: Position | None) -> Recovery:
        epoch, last, now, entries = _text(reply[0]), int(reply[1]), int(reply[2]), reply[3] or []
        position = Position(last, epoch)
        if since is None:
            return Recovery(position)
        if since.epoch != epoch:
            return Recovery(position, False, OTHER_EPOCH)
        if since.offset > last:
            return Recovery(position, False, UNKNOWN_OFFSET)
        oldest = now - self.settings.ttl * 1000
        messages = []
        expected = since.offset + 1
        for entry_id, fields in entries:
            values = _fields(fields)
            if int(_text(entry_id).partition("-")[0]) != expected or int(values.get("t", 0)) < oldest:
                return Recovery(position, False, TOO_OLD)  # trimmed, expired, or a hole
            data = values["d"]
            messages.append(data.encode("utf-8") if isinstance(data, str) else data)
            expected += 1
        if expected != last + 1:
            return Recovery(position, False, TOO_OLD)
        return Recovery(position, True, None, tuple(messages))

    def hole(self, room_id: str) -> None:
        """Messages of the room went out unnumbered (Redis was unreachable): no resuming across them."""
        if self.settings.enabled:
            sent = self._hole.run(self.execute, self.keys(room_id)[:1], [])
            if sent is not None:
                sent.addErrback(lambda failure: log.warn(
                    "cluster: marking a gap in room {room} failed: {why}", room=room_id,
                    why=failure.getErrorMessage()))

    def drop(self, room_id: str) -> None:
        """The room was closed: its order and history go with it."""
        sent = self.execute("DEL", *self.keys(room_id))
        if sent is not None:
            sent.addErrback(lambda _: None)


def _fields(flat: Any) -> dict[str, Any]:
    """A stream entry's fields (a flat list, or a mapping) by name."""
    if isinstance(flat, dict):
        return {_text(k): v for k, v in flat.items()}
    items = list(flat)
    return {_text(items[i]): items[i + 1] for i in range(0, len(items) - 1, 2)}
