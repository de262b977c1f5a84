"""Envelope decoding keeps the sender's text and refuses bad input exactly; encoding
writes verbatim text as is."""

from __future__ import annotations

import pytest

from wingman_gateway import errors
from wingman_gateway.envelope import Verbatim, decode, encode, nesting_depth, splice
from wingman_gateway.errors import GatewayError


def test_raw_text_of_payload_members_is_kept() -> None:
    text = '{ "type" : "broadcast", "payload": { "groupId": "r" , "message" : [1.50, {"a": "\\u00e9"}] } }'
    envelope = decode(text, 64)
    assert envelope.type == "broadcast"
    assert envelope.payload_raw["message"] == '[1.50, {"a": "\\u00e9"}]'
    assert envelope.payload == {"groupId": "r", "message": [1.5, {"a": "é"}]}


def test_bytes_are_decoded_as_utf8() -> None:
    envelope = decode('{"type":"ping","payload":{"message":"héllo"}}'.encode(), 64)
    assert envelope.payload_raw["message"] == '"héllo"'


def test_last_duplicate_payload_wins() -> None:
    envelope = decode('{"type":"x","payload":{"message":1},"payload":null}', 64)
    assert envelope.payload == {}
    assert envelope.payload_raw == {}


@pytest.mark.parametrize("text, expected", [
    # The member's name escaped: the envelope is read in one C pass, its sources found on first use.
    ('{"type":"broadcast","payload":{"\\u006dessage": 1.50 ,"groupId":"r"}}', {"message": "1.50", "groupId": '"r"'}),
    # An integer too long for ``int`` beside it: that search takes the long way too.
    ('{"type":"x","payload":{"n":' + "9" * 5000 + ',"m\\u0065ssage":[2.0]}}', {"n": "9" * 5000, "message": "[2.0]"}),
    ('{"type":"register","payload":{"name":"a"}}', {"name": '"a"'}),
])
def test_payload_sources_are_found_for_any_envelope(text: str, expected: dict[str, str]) -> None:
    envelope = decode(text, 64)
    assert envelope.payload_raw == expected
    assert envelope.payload_raw is envelope.payload_raw  # found once


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\xc3\x28", "message is not valid UTF-8"),
        ("", "message is not valid JSON"),
        ("{", "message is not valid JSON"),
        ('{"type":"x"} trailing', "message is not valid JSON"),
        ('{"type":"x","v":NaN}', "message is not valid JSON"),
        ('{"type":"x","v":-Infinity}', "message is not valid JSON"),
        ("[1,2]", "envelope must be a JSON object"),
        ('"text"', "envelope must be a JSON object"),
        ('{"payload":{}}', "envelope field 'type' must be a string"),
        ('{"type":["a"]}', "envelope field 'type' must be a string"),
        ('{"type":"a","messageId":true}', "envelope field 'messageId' must be a string or integer"),
        ('{"type":"a","payload":[1]}', "envelope field 'payload' must be an object"),
    ],
)
def test_bad_input_gets_invalid_message(data: str | bytes, message: str) -> None:
    with pytest.raises(GatewayError) as caught:
        decode(data, 64)
    assert caught.value.code == errors.INVALID_MESSAGE
    assert caught.value.message == message
    assert not caught.value.fatal


def test_nesting_limit_counts_only_structure() -> None:
    assert nesting_depth('{"a":[{"b":"[[[[{{{{"}]}') == 3
    assert nesting_depth('{"a":[{"b":"\\"[[[[{{{{"}]}') == 3
    assert nesting_depth("{[]}" + "[[[]]]") == 3
    assert nesting_depth("[" * 1000 + "]" * 1000) == 1000
    deep = '{"type":"x","payload":{"message":' + "[" * 63 + "]" * 63 + "}}"
    assert decode(deep, 65).type == "x"
    with pytest.raises(GatewayError) as caught:
        decode(deep, 64)
    assert caught.value.message == "JSON nested deeper than 64 levels"


def test_nesting_far_beyond_recursion_limit_is_refused_cleanly() -> None:
    with pytest.raises(GatewayError) as caught:
        decode("[" * 100_000 + "]" * 100_000, 64)
    assert caught.value.code == errors.INVALID_MESSAGE


def test_splice_puts_raw_value_last() -> None:
    assert splice({"type": "broadcast", "n": "é"}, "payload", ' {"x" : 1e5} ') == (
        b'{"type":"broadcast","n":"\\u00e9","payload": {"x" : 1e5} }'
    )


def test_verbatim_text_is_written_in_place_whatever_the_strings_around_it() -> None:
    # One string holds what a verbatim part stands in as for one pass
    # (a NUL): the envelope is then encoded part by part, to the same bytes.
    for name in ("room", "\x00", 'x"\x00'):
        envelope = {"type": "ack", "payload": {"groupName": name, "members": Verbatim('[{"a":1}]'),
                                               name: [Verbatim("null"), "é"]}, "timestamp": 1}
        plain = {"type": "ack", "payload": {"groupName": name, "members": [{"a": 1}], name: [None, "é"]},
                 "timestamp": 1}
        assert encode(envelope) == encode(plain)
    assert encode({"type": "x", "payload": Verbatim('{"é":[]}')}) == '{"type":"x","payload":{"é":[]}}'.encode()
