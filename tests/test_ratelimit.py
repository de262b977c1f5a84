"""Rate limits on a Router in memory: token buckets, every message metered."""

from __future__ import annotations

import json

import pytest

from harness.memory import Harness
from wingman_gateway import errors
from wingman_gateway.checks import ConfigError
from wingman_gateway.config import build
from wingman_gateway.limits import Limits
from wingman_gateway.ratelimit import Budgets, TokenBucket, source_of

BROADCAST = {"type": "broadcast", "payload": {"groupId": "room", "message": "tok"}}


def errors_in(messages: list[dict]) -> list[dict]:
    return [m for m in messages if m["type"] == "error"]


def test_defaults_let_an_agent_stream_for_a_minute() -> None:
    """200 messages a second for 60 s, in bursts of 50, are never refused."""
    h = Harness(Limits())
    agent, agent_conn = h.node("agent", "room")
    _, watcher_conn = h.node("watcher", "room")
    for _ in range(60 * 4):  # four bursts of 50 a second
        for _ in range(50):
            h.send(agent, BROADCAST)
        h.clock.advance(0.25)
    assert errors_in(agent_conn.take()) == []
    assert len(watcher_conn.take()) == 60 * 200


def test_a_runaway_node_is_held_to_the_rate() -> None:
    h = Harness(Limits(message_rate=250, message_burst=500))
    agent, conn = h.node("agent", "room")
    h.node("watcher", "room")
    h.clock.advance(10)  # the bucket is full again
    conn.take()
    for _ in range(500):
        h.send(agent, BROADCAST)
    assert conn.take() == []
    h.send(agent, dict(BROADCAST, messageId="over"))
    [reply] = conn.take()
    assert reply["type"] == "error" and reply["messageId"] == "over"
    payload = reply["payload"]
    assert payload["code"] == errors.RATE_LIMITED
    assert payload["message"] == "rate limit of 250 messages per second (bursts of 500) exceeded"
    assert payload["retryAfterMs"] == 5  # one token comes back in 4 ms
    assert payload["details"] == {"retryAfterMs": 5, "rate": 250, "burst": 500}
    # A flood of 10 s at 1000 messages a second: 250 a second get through.
    accepted = 0
    for _ in range(10_000):
        h.clock.advance(0.001)
        before = len(conn.raw)
        h.send(agent, BROADCAST)
        accepted += len(conn.raw) == before
    assert 2490 <= accepted <= 2510
    assert conn.closed is None


@pytest.mark.parametrize("junk", [
    "not json",
    json.dumps({"type": "no-such-type"}),
    json.dumps({"payload": {}}),
    "[" * 2000,
])
def test_invalid_and_unknown_messages_are_metered(junk: str) -> None:
    h = Harness(Limits(message_rate=1, message_burst=10))
    session, conn = h.connect()
    for _ in range(10):
        h.send(session, junk)
    assert all(m["payload"]["code"] != errors.RATE_LIMITED for m in conn.take())
    h.send(session, junk)
    [reply] = conn.take()
    assert reply["payload"]["code"] == errors.RATE_LIMITED


def test_large_messages_are_metered_before_they_are_decoded() -> None:
    """Over the limit, a large message is refused without being read at all."""
    h = Harness(Limits(message_rate=1, message_burst=2, max_unregistered_payload=200_000))
    session, conn = h.connect()
    big_invalid = '{"type": "ping", "messageId": "x", "pad": "' + "a" * 100_000  # unterminated
    big_unknown = '{"type": "ping", "pad": "' + "a" * 100_000 + '", "messageId": "late"}'
    h.send(session, big_invalid)
    h.send(session, big_invalid)
    assert [m["payload"]["code"] for m in conn.take()] == [errors.INVALID_MESSAGE] * 2
    h.send(session, big_invalid)
    [reply] = conn.take()
    assert reply["payload"]["code"] == errors.RATE_LIMITED
    assert reply["messageId"] == "x"  # read from the first 512 characters only
    h.send(session, big_unknown)
    [reply] = conn.take()
    assert reply["payload"]["code"] == errors.RATE_LIMITED
    assert "messageId" not in reply  # too far in to be read without decoding


def test_bytes_are_metered_before_they_are_decoded() -> None:
    """The byte bucket refuses a large message unread; small ones still pass, time pays it back."""
    h = Harness(Limits(byte_rate=10_000, byte_burst=40_000))
    agent, conn = h.node("agent", "room")
    _, watcher = h.node("watcher", "room")
    big = json.dumps({"type": "broadcast", "messageId": "big",
                      "payload": {"groupName": "room", "message": [{}] * 4000}})
    assert 12_000 < len(big) < 17_000
    h.clock.advance(10)
    conn.take()
    h.send(agent, big)
    h.send(agent, big)
    assert [m["type"] for m in conn.take()] == ["ack", "ack"]
    h.send(agent, big)
    [reply] = conn.take()
    assert reply["messageId"] == "big"
    payload = reply["payload"]
    assert payload["code"] == errors.RATE_LIMITED
    assert payload["message"] == "byte rate limit of 10000 bytes per second (bursts of 40000) exceeded"
    left = 40_000 - 2 * len(big)
    wait_ms = int((len(big) - left) / 10_000 * 1000) + 1
    assert payload["details"] == {"retryAfterMs": wait_ms, "byteRate": 10_000, "byteBurst": 40_000,
                                  "size": len(big)}
    assert len(watcher.take()) == 2
    h.send(agent, dict(BROADCAST, payload={"groupName": "room", "message": "small"}, messageId="s"))
    assert conn.take()[0]["type"] == "ack"
    h.clock.advance(wait_ms / 1000 + 0.05)  # and the small message's bytes
    h.send(agent, big)
    assert conn.take()[0]["type"] == "ack"


def test_before_registering_only_small_messages_are_read() -> None:
    h = Harness(Limits())
    session, conn = h.connect()
    register = json.dumps({"type": "register", "messageId": "r",
                           "payload": {"name": "a", "metadata": {"x": [{}] * 60_000}}})
    h.send(session, register)
    [reply] = conn.take()
    assert reply["payload"] == {
        "code": errors.PAYLOAD_TOO_LARGE,
        "message": f"message of {len(register)} bytes exceeds the limit of 131072 bytes before registering",
        "details": {"limit": 131072},
    }
    ack = h.request(session, conn, "register", {"name": "a"})
    assert ack["payload"]["limits"]["byteRate"] == 1024 * 1024
    # Registered, the full --max-payload applies.
    h.send(session, json.dumps({"type": "ping", "messageId": "p", "pad": "x" * 100_000}))
    assert conn.take()[0]["type"] == "pong"


def test_pings_have_their_own_bucket_and_pongs_are_dropped_quietly() -> None:
    h = Harness(Limits(message_rate=1, message_burst=3))
    session, conn = h.connect()
    for n in range(3):
        h.send(session, {"type": "ping", "messageId": n})
    assert [m["type"] for m in conn.take()] == ["pong"] * 3
    h.send(session, {"type": "ping", "messageId": "p"})
    [reply] = conn.take()
    assert reply["payload"]["code"] == errors.RATE_LIMITED and reply["messageId"] == "p"
    h.send(session, {"type": "pong"})
    assert conn.take() == []
    # Requests still have their own budget: a streaming node answers pings.
    reply = h.request(session, conn, "register", {"name": "a"})
    assert reply["type"] == "ack"


def test_reconnecting_does_not_reset_the_budget() -> None:
    h = Harness(Limits(message_rate=1, message_burst=5))
    session, conn = h.connect()
    conn.peer = "tcp:10.0.0.7:4000"
    h.router.disconnect(session)  # fresh bucket, nothing owed: not kept
    assert h.router.meters.messages.kept() == 0
    first = h.router.connect(_peer_conn("tcp:10.0.0.7:4001"))
    for _ in range(5):
        h.send(first, {"type": "ping"})
        h.send(first, "junk")
    h.router.disconnect(first)
    assert h.router.meters.messages.kept() == 1
    again_conn = _peer_conn("tcp:10.0.0.7:4002")
    again = h.router.connect(again_conn)
    h.send(again, "junk")
    h.send(again, {"type": "ping"})
    assert [m["payload"]["code"] for m in again_conn.take()] == [errors.RATE_LIMITED] * 2
    # Another address has its own budget.
    other_conn = _peer_conn("tcp:10.0.0.8:4000")
    other = h.router.connect(other_conn)
    h.send(other, "junk")
    assert other_conn.take()[0]["payload"]["code"] == errors.INVALID_MESSAGE
    # Time pays the debt back.
    h.clock.advance(1.01)
    h.send(again, "junk")
    assert again_conn.take()[0]["payload"]["code"] == errors.INVALID_MESSAGE


def _peer_conn(peer: str):  # type: ignore[no-untyped-def]
    from harness.memory import MemoryConnection

    return MemoryConnection(peer)


def test_rate_limit_off() -> None:
    h = Harness(Limits(message_rate=0))
    a, a_conn = h.node("a", "room")
    h.node("b", "room")
    a_conn.take()
    for _ in range(5000):
        h.send(a, BROADCAST)
        h.send(a, "junk")
    assert {m["payload"]["code"] for m in a_conn.take()} == {errors.INVALID_MESSAGE}


def test_kept_budgets_are_bounded() -> None:
    budgets = Budgets(rate=1, burst=10, keep=100)
    for n in range(10_000):
        bucket = budgets.open(f"10.0.{n // 250}.{n % 250}", 0.0)
        bucket.take(0.0)
        budgets.close(f"10.0.{n // 250}.{n % 250}", bucket, 0.0)
    assert budgets.kept() == 100
    budgets.close("x", TokenBucket(1, 10, 0.0), 100.0)  # full: not kept
    assert budgets.kept() == 100


@pytest.mark.parametrize("peer, source", [
    ("tcp:127.0.0.1:50000", "127.0.0.1"),
    ("tcp6:::1:50000", "::1"),
    ("tcp:[2001:db8::1]:443", "2001:db8::1"),
    ("alice@192.0.2.1:2222", "192.0.2.1"),
    ("unix:/run/wingman.sock", "/run/wingman.sock"),
])
def test_source_of(peer: str, source: str) -> None:
    assert source_of(peer) == source


def _limits(**flags: object) -> Limits:
    return build({}, {k: v for k, v in flags.items()}, [], False).limits


def test_settings() -> None:
    assert (_limits().message_rate, _limits().message_burst) == (250, 500)
    custom = _limits(**{"message-rate": "1000", "message-burst": "50"})
    assert (custom.message_rate, custom.message_burst) == (1000, 50)
    # The older pair maps to a bucket: N per window is rate N/window, burst N.
    older = _limits(**{"rate-limit": "100", "rate-window": "60000"})
    assert (older.message_rate, older.message_burst) == (100 / 60, 100)
    assert _limits(**{"rate-limit": "0"}).message_rate == 0
    with pytest.raises(ConfigError, match="rateWindow: needs rateLimit"):
        _limits(**{"rate-window": "1000"})
    assert (_limits().byte_rate, _limits().byte_burst) == (1024 * 1024, 2 * 1024 * 1024)
    custom = _limits(**{"byte-rate": "1000", "byte-burst": "5000", "max-payload": "5000"})
    assert (custom.byte_rate, custom.byte_burst) == (1000, 5000)
    assert _limits(**{"byte-rate": "0", "byte-burst": "300"}).byte_rate == 0
    # Rate limits off means all of them: no byte budget either.
    off = Harness(Limits(message_rate=0))
    session, _ = off.connect()
    assert session.byte_budget is None and session.budget is None
    assert _limits(**{"rate-limit": "0", "byte-burst": "300"}).message_rate == 0
    with pytest.raises(ConfigError, match=r"byteBurst: must be at least maxPayload \(a largest message must fit\)"):
        _limits(**{"byte-burst": "5000"})
    assert _limits(**{"max-unregistered-payload": "1024", "max-metadata": "512"}).max_unregistered_payload == 1024
    with pytest.raises(ConfigError, match="maxMetadata: must be less than maxUnregisteredPayload"):
        _limits(**{"max-unregistered-payload": "1024"})
