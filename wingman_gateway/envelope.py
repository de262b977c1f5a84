"""Decoding and encoding of protocol v1 envelopes.

Payloads are forwarded untouched: a decoded envelope gives the exact
source text of the members of its ``payload``, so the router can splice a
sender's ``message`` into the outgoing envelope byte for byte instead of
re-serialising it. Decoding itself is one pass of json's C decoder; the
source texts are found only for the envelopes that forward one.
"""

from __future__ import annotations

import json
import re
import sys
from itertools import accumulate
from json.decoder import scanstring  # type: ignore[attr-defined]  # json's own C scanner; typeshed omits it
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]  # its C encoder
from typing import Any, Callable

import attrs

from wingman_gateway import errors
from wingman_gateway.errors import GatewayError


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


@attrs.frozen
class LargeInteger:
    """A JSON integer longer than Python converts (``sys.get_int_max_str_digits``).

    It is valid JSON, so it is accepted and, inside payloads, forwarded as
    sent; where the gateway itself needs a number it is refused by type.
    """

    text: str


def _parse_int(text: str) -> int | LargeInteger:
    if len(text.lstrip("-")) > _INT_DIGITS:
        return LargeInteger(text)
    return int(text)


_INT_DIGITS = sys.get_int_max_str_digits() or sys.maxsize
_RawDecode = Callable[[str, int], tuple[Any, int]]
# NaN and Infinity are not JSON; a payload carrying them would break receivers.
_raw_decode: _RawDecode = json.JSONDecoder(parse_constant=_reject_constant).raw_decode
# The same with a Python hook per integer: slower, used only for a text
# that holds an integer too long for ``int``.
_raw_decode_large: _RawDecode = json.JSONDecoder(
    parse_constant=_reject_constant, parse_int=_parse_int
).raw_decode
# The pattern matches the empty string too, so the match is never None.
_skip_ws: Callable[[str, int], re.Match[str]] = re.compile(r"[ \t\n\r]*").match  # type: ignore[assignment]  # never None
# A string literal, or an unterminated one up to the end of the text. The
# possessive loops and the end-of-text alternative make every character
# consumed once: a string that never ends cannot be rescanned from each of
# its quotes (which made this quadratic).
_string = re.compile(r'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)', re.DOTALL).sub
# Brackets only, both kinds as one (depth does not tell them apart).
_AS_SQUARE = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = {ord("["): 1, ord("]"): -1}
# Payload members the router forwards as sent (``Envelope.payload_raw``): an
# envelope naming one is read keeping its sources, the others in one C pass.
_FORWARDED = ('"message"', '"metadata"')
# Pair-removal rounds tried before counting bracket by bracket.
_ROUNDS = 16


@attrs.frozen
class Verbatim:
    """JSON text that ``encode`` writes as is where a value goes.

    For text encoded once and sent many times: a node's public
    description in every member list of its rooms (a sender's payload,
    always last, goes through ``splice``).
    """

    text: str


class _HasVerbatim(Exception):
    """The object holds a ``Verbatim``: ``_with_verbatim`` encodes it."""


def _unknown(value: Any) -> Any:
    if isinstance(value, Verbatim):
        raise _HasVerbatim
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _c_encoder(default: Callable[[Any], Any]) -> Callable[[Any, int], Any]:
    """json's C encoder, compact and ASCII-safe, asking ``default`` for what it cannot encode.

    ``JSONEncoder.encode`` makes a new one on every call, with a dict to
    catch reference cycles (which the gateway's own envelopes never have):
    0.6-0.8 us of the 1-4 an ack costs, for every envelope the gateway writes.
    """
    encoder: Callable[[Any, int], Any] = c_make_encoder(
        None, default, encode_basestring_ascii, None, ":", ",", False, False, True
    )
    return encoder


_encoder = _c_encoder(_unknown)  # made once


def _dumps(obj: Any) -> str:
    return "".join(_encoder(obj, 0))


@attrs.define(slots=True)
class Envelope:
    """One decoded client envelope.

    ``fields`` are the decoded top-level values and ``text`` the envelope
    as sent. ``payload_raw`` holds the source text of the members of an
    object ``payload``: only the messages that forward a value untouched
    (a message's ``message``, a node's ``metadata``) read it, so it is
    found while decoding those (``_FORWARDED``), on first use for others.
    """

    type: str
    fields: dict[str, Any]
    text: str
    _payload_raw: dict[str, str] | None = None

    @property
    def message_id(self) -> str | int | None:
        return self.fields.get("messageId")

    @property
    def payload(self) -> dict[str, Any]:
        value = self.fields.get("payload")
        return value if isinstance(value, dict) else {}

    @property
    def payload_raw(self) -> dict[str, str]:
        if self._payload_raw is None:
            self._payload_raw = _payload_sources(self.text)
        return self._payload_raw


def encode(obj: dict[str, Any]) -> bytes:
    """Encode a gateway-built envelope (compact JSON, ASCII-safe but for ``Verbatim`` text).

    Objects without a ``Verbatim`` are encoded in one pass of json's C
    encoder; the others take a second pass (``_with_verbatim``), to the
    bytes json gives the values the ``Verbatim`` texts hold.
    """
    try:
        return _dumps(obj).encode("ascii")
    except _HasVerbatim:
        return _with_verbatim(obj)


# What a Verbatim stands in as for one encoding pass, and how that pass writes it.
_STAND_IN = "\x00"
_STOOD_IN = '"\\u0000"'


def _with_verbatim(obj: Any) -> bytes:
    """One encoding pass with a stand-in for each ``Verbatim``, then its text in the stand-in's place.

    A stand-in's encoding never overlaps another value's (it is a whole
    string, between a ``:``, ``,`` or ``[`` and a ``,``, ``}`` or ``]``);
    should a string of the envelope encode the same, there are more of
    them than stand-ins, and the envelope is encoded part by part instead.
    """
    texts: list[str] = []

    def stand_in(value: Any) -> Any:
        if isinstance(value, Verbatim):
            texts.append(value.text)
            return _STAND_IN
        return _unknown(value)

    pieces = "".join(_c_encoder(stand_in)(obj, 0)).split(_STOOD_IN)
    if len(pieces) != len(texts) + 1:
        return _compose(obj).encode("utf-8")
    joined = [pieces[0]]
    for text, piece in zip(texts, pieces[1:]):
        joined += (text, piece)
    return "".join(joined).encode("utf-8")


def _compose(value: Any) -> str:
    """JSON text of ``value`` with each ``Verbatim`` inside it written as is, part by part."""
    if isinstance(value, Verbatim):
        return value.text
    if isinstance(value, dict):
        return "{" + ",".join([_key(key) + ":" + _compose(item) for key, item in value.items()]) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join([_compose(item) for item in value]) + "]"
    return _dumps(value)


def _key(key: Any) -> str:
    """A member name as json writes it (a number or a constant becomes text too)."""
    return _dumps(key) if isinstance(key, str) else _dumps({key: 0})[1:-3]


def splice(head: dict[str, Any], key: str, raw_value: str) -> bytes:
    """``encode`` of ``head`` with ``key: Verbatim(raw_value)`` added last, in one pass.

    The common case (a message's payload), without a first pass that
    finds the ``Verbatim``.
    """
    text = _dumps(head)
    return (text[:-1] + ',"' + key + '":' + raw_value + "}").encode("utf-8")


def nesting_depth(text: str) -> int:
    """Deepest bracket nesting in JSON text (brackets in strings ignored).

    Linear in the text and run in C: strings are cut out by a regex, the
    rest reduced to its brackets by ``bytes.translate``. Each round of
    deleting every ``[]`` pair removes exactly the innermost level, so a
    text nested up to ``_ROUNDS`` deep is measured in a few passes of
    ``bytes.replace``; a deeper, chain-shaped or unbalanced one is counted
    bracket by bracket (``accumulate``), still without a Python loop per
    token.
    """
    brackets = (
        _string("", text).encode("utf-8", "surrogatepass").translate(_AS_SQUARE, _NOT_BRACKET)
    )
    rest = brackets
    for depth in range(_ROUNDS + 1):
        if not rest:
            return depth
        shorter = rest.replace(b"[]", b"")
        if len(rest) - len(shorter) <= len(rest) // 8:
            break  # long chains or unbalanced: rounds would be slower than counting
        rest = shorter
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
    # One that forwards a member as sent is read once, keeping the sources.
    sources = _FORWARDED[0] in text or _FORWARDED[1] in text
    try:
        fields, payload_raw = _parse(text, _raw_decode, sources)
    except ValueError as error:
        if "integer string conversion" not in str(error):
            raise _not_json() from None
        fields, payload_raw = _parse(text, _raw_decode_large, sources)
    message_id = fields.get("messageId")
    if isinstance(message_id, LargeInteger):
        raise GatewayError(
            errors.INVALID_MESSAGE,
            f"envelope field 'messageId' is an integer of more than {_INT_DIGITS} digits",
        )
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
    return Envelope(kind, fields, text, payload_raw)


def peek_message_id(data: bytes | str, limit: int = 512) -> str | int | None:
    """The ``messageId`` if it is among the first members within ``limit`` characters.

    For answering a message that is refused before it is decoded (rate
    limits): the cost is bounded by ``limit`` whatever the message's size.
    """
    head = data[:limit]
    text = head.decode("utf-8", "ignore") if isinstance(head, bytes) else head
    try:
        idx = _skip_ws(text, 0).end()
        if text[idx : idx + 1] != "{":
            return None
        idx += 1
        while True:
            idx = _skip_ws(text, idx).end()
            if text[idx : idx + 1] != '"':
                return None
            key, idx = scanstring(text, idx + 1)
            idx = _skip_ws(text, idx).end()
            if text[idx : idx + 1] != ":":
                return None
            value, idx = _raw_decode(text, _skip_ws(text, idx + 1).end())
            if key == "messageId":
                ok = isinstance(value, (str, int)) and not isinstance(value, bool)
                return value if ok else None
            idx = _skip_ws(text, idx).end()
            if text[idx : idx + 1] != ",":
                return None
            idx += 1
    except (ValueError, RecursionError):
        return None


def _not_json() -> GatewayError:
    return GatewayError(errors.INVALID_MESSAGE, "message is not valid JSON")


def _parse(
    text: str, raw_decode: _RawDecode, sources: bool
) -> tuple[dict[str, Any], dict[str, str] | None]:
    """The top-level object's fields and, with ``sources``, the source text
    of the payload's members (else None: one pass of json's C decoder).

    Raises ``ValueError`` only for an integer too long for ``int`` (the
    caller retries with ``_raw_decode_large``), ``GatewayError`` otherwise.
    """
    start = _skip_ws(text, 0).end()
    payload_raw = None
    try:
        if sources and text[start : start + 1] == "{":
            fields, _, payload_raw, end = _scan_object(text, start, True, raw_decode)
        else:
            fields, end = raw_decode(text, start)
    except RecursionError:
        raise _not_json() from None
    except ValueError as error:
        if "integer string conversion" in str(error):
            raise
        raise _not_json() from None
    if not isinstance(fields, dict):
        raise GatewayError(errors.INVALID_MESSAGE, "envelope must be a JSON object")
    if _skip_ws(text, end).end() != len(text):
        raise _not_json()
    return fields, payload_raw


def _payload_sources(text: str) -> dict[str, str]:
    """The source text of each member of the object ``payload`` of ``text``
    (an envelope ``decode`` accepted); empty if ``payload`` is not an object.

    The members are parsed a second time here, by ``_scan_object``, which
    keeps where each value begins and ends.
    """
    start = _skip_ws(text, 0).end()
    try:
        return _scan_object(text, start, True, _raw_decode)[2]
    except ValueError:  # an integer too long for ``int`` somewhere: decode took the long way too
        return _scan_object(text, start, True, _raw_decode_large)[2]


def _scan_object(
    text: str, idx: int, nest: bool, raw_decode: _RawDecode
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
            value, inner, _, idx = _scan_object(text, idx, False, raw_decode)
        else:
            value, idx = raw_decode(text, idx)
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
