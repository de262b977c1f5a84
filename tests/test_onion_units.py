"""The onion package's pure parts: which listener is published, keys and client key files."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress

from harness.torkit import onion_address
from wingman_gateway.offer import Bound, Offer
from wingman_gateway.onion import listener_target
from wingman_gateway.onion.clientauth import ClientAuthError, load_client_keys, make_client_keys
from wingman_gateway.onion.keys import OnionKey
from wingman_gateway.onion.service import Target


def offering(*listeners: tuple[str, object]) -> Offer:
    """An Offer with these (endpoint string, bound address) listeners."""
    bound = tuple(Bound.of(description, address) for description, address in listeners)
    return Offer(name="gw", version="1", auth_required=False, listeners=bound, bridge=True)


def test_the_first_tcp_listener_is_published_and_wildcards_are_reached_on_loopback() -> None:
    unix = ("unix:/run/w.sock", UNIXAddress(b"/run/w.sock"))
    anywhere = ("tcp:3000", IPv4Address("TCP", "0.0.0.0", 3000))
    assert listener_target(offering(unix, anywhere, ("tcp:4000", IPv4Address("TCP", "10.0.0.5", 4000)))) \
        == Target("127.0.0.1", 3000)
    dual = ("tcp6:3000", IPv6Address("TCP", "::", 3001))
    assert listener_target(offering(dual)) == Target("::1", 3001)
    assert listener_target(offering(dual)).port_spec() == "80,[::1]:3001"  # type: ignore[union-attr]
    tls = ("ssl:3443:privateKey=k.pem", IPv4Address("TCP", "192.168.1.2", 3443))
    target = listener_target(offering(tls))
    assert target == Target("192.168.1.2", 3443, secure=True) and target.port_spec() == "443,192.168.1.2:3443"
    assert listener_target(offering(unix)) is None


def test_key_text_round_trips_and_the_address_matches_plain_ed25519_arithmetic() -> None:
    for _ in range(5):
        key = OnionKey.generate()
        assert OnionKey.parse(key.text()) == key
        assert key.address == onion_address(key.text())
        assert len(key.address) == 56 and key.address.endswith("d")  # version byte 3


@pytest.mark.parametrize("text, message", [
    ("RSA1024:abcd", "expected ED25519-V3:BASE64"),
    ("ED25519-V3:not base64!", "the key is not base64"),
    ("ED25519-V3:" + base64.b64encode(bytes(32)).decode(), "not an expanded ed25519 secret key"),
])
def test_bad_key_text_is_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        OnionKey.parse(text)


def test_client_key_file_takes_tor_lines_bare_keys_and_comments(tmp_path: Path) -> None:
    alice, bob = make_client_keys(), make_client_keys()
    bare = alice.public_line.rsplit(":", 1)[1].lower()
    keys = tmp_path / "clients"
    keys.write_text(f"# who may come in\n\n{bare}   # alice, lower case\n{bob.public_line}\n")
    assert load_client_keys(keys) == (bare.upper(), bob.public_line.rsplit(":", 1)[1])
    keys.write_text(f"{bob.public_line}\ndescriptor:ed25519:{bare}\n")
    with pytest.raises(ClientAuthError, match=r"line 2: expected descriptor:x25519:BASE32 or BASE32"):
        load_client_keys(keys)
    keys.write_text(bare[:40] + "\n")
    with pytest.raises(ClientAuthError, match=r"line 1: .* is not a 32-byte x25519 key"):
        load_client_keys(keys)
    with pytest.raises(ClientAuthError, match=r"cannot read .*missing: No such file"):
        load_client_keys(tmp_path / "missing")
