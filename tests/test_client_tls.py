"""The client library over ``wss://``: certificates and host names are verified."""

from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator, Iterator

import pytest
import pytest_twisted

from harness.clientkit import LOCAL_NAMES, WRONG_NAMES, Inbox, Pki, make_pki, within
from harness.support import GatewayProcess, running_gateway
from wingman_gateway.client import ClientError, GatewayClient


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """A test CA and a server certificate for localhost and 127.0.0.1."""
    return make_pki(tmp_path / "good", LOCAL_NAMES)


@pytest.fixture
def tls_gateway(pki: Pki) -> Iterator[GatewayProcess]:
    with running_gateway("--listen", pki.endpoint()) as gateway:
        yield gateway


@pytest_twisted.async_yield_fixture
async def closing() -> AsyncIterator[list[GatewayClient]]:
    """Clients put here are closed at the end of the test."""
    clients: list[GatewayClient] = []
    yield clients
    for client in clients:
        await within(client.close(), 15)


def tls_client(closing: list[GatewayClient], url: str, name: str, **options: object) -> GatewayClient:
    client = GatewayClient(url, name, request_timeout=5.0, **options)  # type: ignore[arg-type]
    closing.append(client)
    return client


@pytest_twisted.ensureDeferred
async def test_wss_with_the_test_ca_works(
    tls_gateway: GatewayProcess, pki: Pki, closing: list[GatewayClient]
) -> None:
    port = tls_gateway.port
    alice = tls_client(closing, f"wss://localhost:{port}/ws", "alice", ca_file=str(pki.ca))
    bob = tls_client(closing, f"wss://127.0.0.1:{port}/ws", "bob", ca_file=str(pki.ca))
    assert await within(alice.connect()) == alice.node_id
    assert await within(bob.connect()) == bob.node_id
    await within(alice.join("secure"))
    await within(bob.join("secure"))
    inbox = Inbox(bob)
    assert await within(alice.broadcast("secure", {"over": "tls"})) == 1
    assert (await inbox.next("broadcast")).payload == {"over": "tls"}
    assert await within(bob.ping()) < 5


@pytest_twisted.ensureDeferred
async def test_certificate_for_another_name_is_refused(
    tmp_path: Path, closing: list[GatewayClient]
) -> None:
    wrong = make_pki(tmp_path / "wrong", WRONG_NAMES)
    with running_gateway("--listen", wrong.endpoint()) as gateway:
        client = tls_client(closing, f"wss://127.0.0.1:{gateway.port}/ws", "alice", ca_file=str(wrong.ca))
        with pytest.raises(ClientError) as refused:
            await within(client.connect())
        assert refused.value.code == "TLS_ERROR"
        assert "127.0.0.1" in refused.value.message
        assert not client.connected

        by_name = tls_client(closing, f"wss://localhost:{gateway.port}/ws", "bob", ca_file=str(wrong.ca))
        with pytest.raises(ClientError) as refused:
            await within(by_name.connect())
        assert refused.value.code == "TLS_ERROR"


@pytest_twisted.ensureDeferred
async def test_unknown_ca_is_refused_by_the_default_trust_store(
    tls_gateway: GatewayProcess, closing: list[GatewayClient]
) -> None:
    client = tls_client(closing, f"wss://localhost:{tls_gateway.port}/ws", "alice")
    with pytest.raises(ClientError) as refused:
        await within(client.connect())
    assert refused.value.code == "TLS_ERROR"
    assert "certificate verify failed" in refused.value.message


@pytest_twisted.ensureDeferred
async def test_another_ca_is_refused(
    tls_gateway: GatewayProcess, tmp_path: Path, closing: list[GatewayClient]
) -> None:
    stranger = make_pki(tmp_path / "stranger", LOCAL_NAMES)
    client = tls_client(
        closing, f"wss://localhost:{tls_gateway.port}/ws", "alice", ca_file=str(stranger.ca)
    )
    with pytest.raises(ClientError) as refused:
        await within(client.connect())
    assert refused.value.code == "TLS_ERROR"


@pytest_twisted.ensureDeferred
async def test_unreadable_ca_file_is_a_tls_error(
    tls_gateway: GatewayProcess, tmp_path: Path, closing: list[GatewayClient]
) -> None:
    for ca_file in (tmp_path / "missing.pem", tmp_path / "garbage.pem"):
        if ca_file.name == "garbage.pem":
            ca_file.write_text("not a certificate\n")
        client = tls_client(
            closing, f"wss://localhost:{tls_gateway.port}/ws", "alice", ca_file=str(ca_file)
        )
        with pytest.raises(ClientError) as refused:
            await within(client.connect())
        assert refused.value.code == "TLS_ERROR"
        assert str(ca_file) in refused.value.message
