"""Property suite for envelopes: the decoder's round trips, only GatewayError, linear
time; the encoder's verbatim parts."""

from __future__ import annotations

import json
import time

from typing import Any

from hypothesis import given, strategies as st

from wingman_gateway.envelope import Verbatim, decode, encode, nesting_depth, peek_message_id
from wingman_gateway.errors import GatewayError

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
message_ids = st.none() | st.text(max_size=20) | st.integers()


@given(kind=st.text(min_size=1, max_size=12), message_id=message_ids,
       payload=st.dictionaries(st.text(max_size=8), json_values, max_size=5),
       indent=st.sampled_from([None, 0, 2]))
def test_round_trip(kind: str, message_id: object, payload: dict, indent: int | None) -> None:
    envelope = {"type": kind, "payload": payload}
    if message_id is not None:
        envelope["messageId"] = message_id
    text = json.dumps(envelope, indent=indent)
    decoded = decode(text, 64)
    assert decoded.type == kind and decoded.message_id == message_id
    assert json.loads(json.dumps(decoded.payload)) == json.loads(json.dumps(payload))
    for key, raw in decoded.payload_raw.items():
        assert json.loads(raw) == json.loads(json.dumps(payload[key]))
    assert peek_message_id(text, limit=len(text)) == message_id


@given(payload=st.dictionaries(st.text(max_size=8), json_values, max_size=5), data=st.data())
def test_verbatim_parts_encode_as_the_values_they_hold(payload: dict, data: st.DataObject) -> None:
    """Any values of an envelope given as ``Verbatim`` JSON text: the same bytes."""

    def some_verbatim(value: Any) -> Any:
        if data.draw(st.booleans()):
            return Verbatim(json.dumps(value, separators=(",", ":")))
        if isinstance(value, dict):
            return {key: some_verbatim(item) for key, item in value.items()}
        if isinstance(value, list):
            return [some_verbatim(item) for item in value]
        return value

    envelope = {"type": "ack", "payload": payload, "timestamp": 1}
    mixed = {"type": "ack", "payload": some_verbatim(payload), "timestamp": 1}
    assert encode(mixed) == encode(envelope)


@given(st.binary(max_size=300) | st.text(max_size=300))
def test_anything_else_is_a_gateway_error(data: bytes | str) -> None:
    try:
        decode(data, 64)
    except GatewayError:
        pass
    peek_message_id(data)  # never raises


@given(st.lists(st.sampled_from(['[', ']', '{', '}', '"', '\\', 'a', ':', ',', '1']), max_size=400))
def test_depth_scan_agrees_with_the_decoder(tokens: list[str]) -> None:
    text = "".join(tokens)
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return
    def depth(v: object) -> int:
        if isinstance(v, list):
            return 1 + max((depth(x) for x in v), default=0)
        if isinstance(v, dict):
            return 1 + max((depth(x) for x in v.values()), default=0)
        return 0
    assert nesting_depth(text) == depth(value)


@given(st.sampled_from(['[', '"', '\\"', '{"a":', '"\\', '[[[["']), st.integers(1000, 4000))
def test_time_grows_linearly(unit: str, repeat: int) -> None:
    """Ten times the input takes far less than a hundred times as long (bounded sizes)."""
    def cost(n: int) -> float:
        text = "[" * 65 + unit * n
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            try:
                decode(text, 64)
            except GatewayError:
                pass
            best = min(best, time.perf_counter() - started)
        return best
    small, large = cost(repeat), cost(repeat * 10)
    assert large < 40 * small + 0.005, (small, large)  # quadratic would be ~100x
