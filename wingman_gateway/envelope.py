"""Decoding and encoding of protocol v1 envelopes.

Payloads are forwarded untouched: decoding keeps the exact source text of
every top-level field (and of the fields inside ``payload``), so the router
can splice a sender's ``message`` into the outgoing envelope byte for byte
instead of re-serialising it.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from json.decoder import scanstring
from typing import Any

import attrs

from wingman_gateway import errors
from wingman_gateway.errors import GatewayError



def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# NaN and Infinity are not JSON; a payload carrying them would break receivers.
_decoder = json.JSONDecoder(parse_constant=_reject_constant)
_raw_decode = _decoder.raw_decode
_skip_ws = re.compile(r"[ \t\n\r]*").match
_string = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL).sub
_not_bracket = re.compile(r"[^\[\]{}]+").sub
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode


@attrs.define(slots=True)
class Envelope:
    """One decoded client envelope.

    ``fields`` are the decoded top-level values, ``raw`` their source text;
    ``payload_raw`` holds the source text of the members of an object
    ``payload``.
    """

    type: str
    fields: dict[str, Any]
    raw: dict[str, str]
    payload_raw: dict[str, str]

    @property
    def message_id(self) -> str | int | None:
        return self.fields.get("messageId")

    @property
    def payload(self) -> dict[str, Any]:
        value = self.fields.get("payload")
        return value if isinstance(value, dict) else {}


def encode(obj: dict[str, Any]) -> bytes:
    """Encode a gateway-built envelope (ASCII-safe compact JSON)."""
    return _dumps(obj).encode("ascii")


def splice(head: dict[str, Any], key: str, raw_value: str) -> bytes:
    """Encode ``head`` with one more member whose value is verbatim JSON text."""
    text = _dumps(head)
    return (text[:-1] + ',"' + key + '":' + raw_value + "}").encode("utf-8")


def nesting_depth(text: str) -> int:
    """Deepest bracket nesting in JSON text (brackets in strings ignored).

    Runs in C (regex, map, accumulate): no Python loop per token, so a
    hostile megabyte of brackets costs tens of milliseconds, not seconds.
    """
    brackets = _not_bracket("", _string("", text))
    if not brackets:
        return 0
    return max(accumulate(map(_STEP.__getitem__, brackets)))


def decode(data: bytes | str, max_depth: int) -> Envelope:
    """Decode one envelope, or raise ``GatewayError`` with the exact code."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise GatewayError(errors.INVALID_MESSAGE, "message is not valid UTF-8")
    else:
        text = data
    # Cheap bound first: a text with few brackets cannot nest deeply.
    if text.count("{") + text.count("[") > max_depth:
        if nesting_depth(text) > max_depth:
            raise GatewayError(
                errors.INVALID_MESSAGE, f"JSON nested deeper than {max_depth} levels"
            )
    start = _skip_ws(text, 0).end()
    if text[start : start + 1] != "{":
        try:
            _raw_decode(text, start)
        except ValueError:
            raise GatewayError(errors.INVALID_MESSAGE, "message is not valid JSON")
        raise GatewayError(errors.INVALID_MESSAGE, "envelope must be a JSON object")
    try:
        fields, raw, payload_raw, end = _scan_object(text, start, nest=True)
    except (ValueError, RecursionError):
        raise GatewayError(errors.INVALID_MESSAGE, "message is not valid JSON")
    if _skip_ws(text, end).end() != len(text):
        raise GatewayError(errors.INVALID_MESSAGE, "message is not valid JSON")
    message_id = fields.get("messageId")
    if message_id is not None and (
        isinstance(message_id, bool) or not isinstance(message_id, (str, int))
    ):
        raise GatewayError(
            errors.INVALID_MESSAGE, "envelope field 'messageId' must be a string or integer"
        )
    # From here the messageId is readable, so the error can answer it.
    kind = fields.get("type")
    if not isinstance(kind, str):
        raise GatewayError(
            errors.INVALID_MESSAGE, "envelope field 'type' must be a string",
            message_id=message_id,
        )
    if "payload" in fields and fields["payload"] is not None and not isinstance(
        fields["payload"], dict
    ):
        raise GatewayError(
            errors.INVALID_MESSAGE, "envelope field 'payload' must be an object",
            message_id=message_id,
        )
    return Envelope(kind, fields, raw, payload_raw)


def _scan_object(
    text: str, idx: int, nest: bool
) -> tuple[dict[str, Any], dict[str, str], dict[str, str], int]:
    """Parse the object at ``text[idx] == '{'``, keeping each member's source.

    With ``nest``, an object ``payload`` member is scanned the same way and
    the source text of its members is returned as the third item.
    """
    values: dict[str, Any] = {}
    raws: dict[str, str] = {}
    inner: dict[str, str] = {}
    idx = _skip_ws(text, idx + 1).end()
    if text[idx : idx + 1] == "}":
        return values, raws, inner, idx + 1
    while True:
        if text[idx : idx + 1] != '"':
            raise ValueError("expected a member name")
        key, idx = scanstring(text, idx + 1)
        idx = _skip_ws(text, idx).end()
        if text[idx : idx + 1] != ":":
            raise ValueError("expected ':'")
        idx = _skip_ws(text, idx + 1).end()
        start = idx
        if nest and key == "payload" and text[idx : idx + 1] == "{":
            value, inner, _, idx = _scan_object(text, idx, nest=False)
        else:
            value, idx = _raw_decode(text, idx)
            if key == "payload":
                inner = {}
        values[key] = value
        raws[key] = text[start:idx]
        idx = _skip_ws(text, idx).end()
        token = text[idx : idx + 1]
        if token == ",":
            idx = _skip_ws(text, idx + 1).end()
        elif token == "}":
            return values, raws, inner, idx + 1
        else:
            raise ValueError("expected ',' or '}'")
