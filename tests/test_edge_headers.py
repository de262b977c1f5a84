"""Headers a client controls never cause a 500: bytes that are not UTF-8, and
digits that are not ASCII, in Last-Event-ID, X-Wingman-Session, Origin and
Authorization are answered 400 with a clear error, and nothing is logged as
a failure."""

from __future__ import annotations


import pytest

from harness import rawhttp
from harness.bridgekit import BridgeNode
from harness.support import GatewayProcess

TOKEN = "header-test-token"
NOT_UTF8 = b"\xff\xfe"
SUPERSCRIPT_TWO = "\u00b2".encode("utf-8")  # a digit to str.isdigit(), not to int()


pytestmark = pytest.mark.gateway("--auth", "--token", TOKEN, shared=True)  # one for the module


@pytest.fixture
def secret(gateway: GatewayProcess) -> str:
    node = BridgeNode(gateway.port)
    assert node.register("reader", token=TOKEN).status == 200
    return node.secret  # type: ignore[return-value]


def bad_request(gateway: GatewayProcess, path: str, headers: dict[str, bytes]) -> str:
    status, _, body = rawhttp.get(gateway.port, path, headers)
    assert status == 400, (status, body)
    assert body["type"] == "error" and body["payload"]["code"] == "INVALID_REQUEST", body
    return body["payload"]["message"]


@pytest.mark.parametrize("value", [NOT_UTF8, b"1" + NOT_UTF8])
def test_last_event_id_not_utf8(gateway: GatewayProcess, secret: str, value: bytes) -> None:
    message = bad_request(gateway, "/bridge/sse", {"X-Wingman-Session": secret.encode(), "Last-Event-ID": value})
    assert message == "header last-event-id is not valid UTF-8"


@pytest.mark.parametrize("path,headers", [
    ("/bridge/sse", {"Last-Event-ID": SUPERSCRIPT_TWO}),
    ("/bridge/poll?after=%C2%B2&timeout=0", {}),
])
def test_non_ascii_digits_are_not_sequence_numbers(gateway: GatewayProcess, secret: str, path: str,
                                                    headers: dict[str, bytes]) -> None:
    message = bad_request(gateway, path, {"X-Wingman-Session": secret.encode(), **headers})
    assert message.endswith("must be a message sequence number (ASCII digits)")


def test_session_header_not_utf8(gateway: GatewayProcess) -> None:
    message = bad_request(gateway, "/bridge/poll", {"X-Wingman-Session": NOT_UTF8})
    assert message == "header x-wingman-session is not valid UTF-8"


@pytest.mark.parametrize("path", ["/bridge/poll", "/bridge/send", "/ws", "/health"])
def test_origin_not_utf8(gateway: GatewayProcess, path: str) -> None:
    assert bad_request(gateway, path, {"Origin": b"http://" + NOT_UTF8}) == "header origin is not valid UTF-8"


@pytest.mark.parametrize("path", ["/stats", "/bridge/poll"])
@pytest.mark.parametrize("value", [b"Bearer " + NOT_UTF8, NOT_UTF8])
def test_authorization_not_utf8(gateway: GatewayProcess, path: str, value: bytes) -> None:
    assert bad_request(gateway, path, {"Authorization": value}) == "header authorization is not valid UTF-8"


def test_control_characters_in_a_header(gateway: GatewayProcess, secret: str) -> None:
    message = bad_request(gateway, "/bridge/poll", {"X-Wingman-Session": b"abc\x1b[31m"})
    assert message == "header x-wingman-session contains control characters"


def test_nothing_failed_and_the_gateway_keeps_serving(gateway: GatewayProcess, secret: str) -> None:
    # Runs after the others in this module (same gateway): none of them left a traceback.
    status, _, body = rawhttp.get(gateway.port, "/bridge/poll?timeout=0",
                                  {"X-Wingman-Session": secret.encode()})
    assert status == 200 and "messages" in body
    status, _, body = rawhttp.get(gateway.port, "/stats", {"Authorization": f"Bearer {TOKEN}".encode()})
    assert status == 200
    assert " 400 " in gateway.log
    for mark in ("Traceback", "Unhandled", "Processing Failed", " 500 "):
        assert mark not in gateway.log, gateway.log
