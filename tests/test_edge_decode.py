"""Decoding is paid for in bytes: one client sending large legal messages as
fast as it can cannot crowd out the others (default limits).

Before registering, a message over 128 KiB is refused by its size, unread;
after, a byte bucket (1 MiB a second, bursts of 2 MiB) meters every
message before it is decoded.

Unregistered, the flooder costs the gateway so little that another node's
ping round trip stays under ``RTT_P99`` at the 99th percentile (stated in
the README). Registered, each megabyte it is allowed is decoded, and a
megabyte of small JSON objects holds the event loop for 25 ms on an idle
core (60-120 ms on a loaded 2-core machine): the test shows that only the
metered number of them get through and each delays at most one of the
other node's pings.
"""

from __future__ import annotations

import statistics
import threading
from typing import Any

import pytest

from harness.flood import flood, p99, result, rtts_while
from harness.support import GatewayProcess, NodePool, assert_delivers, expect_error

RTT_P99 = 0.050  # seconds
SECONDS = 4.0


def _watch_while_flooding(
    gateway: GatewayProcess, nodes: NodePool, register: bool
) -> tuple[dict[str, Any], list[float], str]:
    """The flooder's tally and another node's ping round trips meanwhile (seconds)."""
    watcher = nodes("watcher", room="calm")
    rtts: list[float] = []
    running = threading.Event()
    running.set()
    pinger = threading.Thread(target=rtts_while, args=(watcher, running, rtts))
    pinger.start()
    flooder = flood(gateway.url, register, seconds=SECONDS)
    try:
        tally = result(flooder)
    finally:
        running.clear()
        pinger.join(10)
    assert len(rtts) >= 100, len(rtts)
    figures = (f"p99 {p99(rtts) * 1000:.1f} ms, median {statistics.median(rtts) * 1000:.1f} ms of {len(rtts)},"
               f" slowest {[round(r * 1000) for r in sorted(rtts)[-12:]]} ms, {tally['codes']}")
    other = nodes("other", room="calm")
    assert_delivers(other, watcher, "calm")
    return tally, rtts, figures


def test_an_unregistered_flood_of_megabytes_is_refused_unread(gateway: GatewayProcess, nodes: NodePool) -> None:
    tally, rtts, figures = _watch_while_flooding(gateway, nodes, register=False)
    assert p99(rtts) < RTT_P99, figures
    assert tally["sent"] >= 20, tally
    assert tally["codes"] == {"PAYLOAD_TOO_LARGE": tally["sent"]}
    refusal = expect_error(
        tally["replies"]["PAYLOAD_TOO_LARGE"], "PAYLOAD_TOO_LARGE",
        f"message of {tally['size']} bytes exceeds the limit of 131072 bytes before registering",
    )
    assert refusal["details"] == {"limit": 131072}


def test_a_registered_flood_of_megabytes_is_held_to_the_byte_rate(gateway: GatewayProcess, nodes: NodePool) -> None:
    tally, rtts, figures = _watch_while_flooding(gateway, nodes, register=True)
    acks, refused = tally["codes"].get("ack", 0), tally["codes"].get("RATE_LIMITED", 0)
    assert set(tally["codes"]) == {"ack", "RATE_LIMITED"}, tally
    # 2 MiB at once, then 1 MiB a second: about one megabyte message a second gets decoded.
    assert 2 <= acks <= 2 + tally["seconds"] + 1, tally
    # Each one decoded holds the loop once (tens of ms; see the module's docstring),
    # delaying at most the one ping in flight: the others keep their round trip.
    assert sum(rtt >= RTT_P99 for rtt in rtts) <= acks, figures
    assert statistics.median(rtts) < 0.010, figures
    assert refused == tally["sent"] - acks
    refusal = expect_error(tally["replies"]["RATE_LIMITED"], "RATE_LIMITED",
                           "byte rate limit of 1048576 bytes per second (bursts of 2097152) exceeded")
    details = refusal["details"]
    assert (details["byteRate"], details["byteBurst"], details["size"]) == (1048576, 2097152, tally["size"])
    assert 0 < details["retryAfterMs"] <= 1000 * tally["size"] / 1048576 + 1
