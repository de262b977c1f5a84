"""Operational tests of the running service: TLS, startup failures, config
files, TCP_NODELAY, heartbeat, slow consumers and graceful shutdown."""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import json
import os
import re
import signal
import socket
import ssl
import struct
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import attrs
import pytest
import pytest_twisted
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol, connectWS
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import quoteStringArgument
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.protocols.tls import TLSMemoryBIOProtocol
from websockets.exceptions import ConnectionClosed

from support import (
    GatewayProcess,
    Node,
    expect_closed,
    expect_error,
    free_tcp_port,
    get_url,
    rss_kib,
    wait_healthy,
    wait_until,
)
from wingman_gateway.tap import Options, makeService

LOOPBACK = "tcp:0:interface=127.0.0.1"


# --- fixtures and helpers ----------------------------------------------------


@pytest.fixture
def launch() -> Iterator[Callable[..., GatewayProcess]]:
    """Starts gateways (waiting for them to listen unless told not to) and stops them all."""
    started: list[GatewayProcess] = []

    def start(*args: str, wait: bool = True) -> GatewayProcess:
        gateway = GatewayProcess(list(args))
        started.append(gateway)
        if wait:
            gateway.wait_listening()
        return gateway

    yield start
    for gateway in started:
        gateway.stop()


@attrs.frozen
class Pki:
    """A test CA and a server certificate it signed, as PEM files."""

    ca: Path
    key: Path
    cert: Path

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts only the test CA."""
        context = ssl.create_default_context(cafile=str(self.ca))
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
        return context

    def endpoint(self) -> str:
        return (
            "ssl:0:interface=127.0.0.1"
            f":privateKey={quoteStringArgument(str(self.key))}"
            f":certKey={quoteStringArgument(str(self.cert))}"
        )


def make_pki(directory: Path) -> Pki:
    """A self-signed CA and a server certificate for 127.0.0.1 and localhost."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wingman test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pki = Pki(ca=directory / "ca.pem", key=directory / "server.key", cert=directory / "server.pem")
    pki.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    pki.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    pki.key.chmod(0o600)
    return pki


def write_config(directory: Path, values: dict[str, Any], name: str = "gateway.json") -> Path:
    path = directory / name
    path.write_text(json.dumps(values))
    return path


def health_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/health"


def registered(url: str, name: str, **kwargs: Any) -> Node:
    """A Node registered as ``name`` (the ack is checked)."""
    node = Node(url, **kwargs)
    reply = node.register(name)
    assert reply["type"] == "ack", reply
    return node


def broadcast_between(sender: Node, receiver: Node, room: str, message: Any) -> None:
    """``sender`` broadcasts to ``room``; ``receiver`` gets it exactly, from ``sender``."""
    ack = sender.request("broadcast", {"groupId": room, "message": message})
    assert ack["type"] == "ack" and ack["payload"]["recipients"] == 1, ack
    got = receiver.recv_type("broadcast")
    assert got["payload"] == message, got
    assert got["fromNodeId"] == sender.node_id and got["groupName"] == room, got


# --- TLS ---------------------------------------------------------------------


def test_tls_listener_verified_broadcast_and_health(launch, tmp_path: Path) -> None:
    """Over ssl: a client verifying against the CA registers, broadcasts, reads /health."""
    pki = make_pki(tmp_path)
    gateway = launch("--listen", pki.endpoint())
    url = f"wss://127.0.0.1:{gateway.port}/ws"
    context = pki.client_context()

    # Verification is really on: a client trusting only the system roots refuses the server.
    with pytest.raises(ssl.SSLCertVerificationError):
        Node(url, ssl=ssl.create_default_context())

    alice = registered(url, "alice", ssl=context)
    bob = registered(url, "bob", ssl=context)
    try:
        assert alice.join("tls-room")["type"] == "ack"
        assert bob.join("tls-room")["type"] == "ack"
        broadcast_between(alice, bob, "tls-room", {"text": "over tls", "n": 1})
        broadcast_between(bob, alice, "tls-room", {"text": "and back", "n": 2})

        status, body = get_url(f"https://127.0.0.1:{gateway.port}/health", context)
        assert status == 200
        assert body["status"] == "healthy" and body["service"] == "wingman-gateway"
        assert body["stats"]["totalNodes"] == 2 and body["stats"]["totalGroups"] == 1
    finally:
        alice.close()
        bob.close()


# --- startup failures ----------------------------------------------------------


def test_endpoint_that_cannot_bind_fails_startup(launch) -> None:
    """A second gateway on a taken port exits non-zero naming the endpoint and the OS reason."""
    first = launch("--listen", LOOPBACK)
    port = first.port
    second = launch("--listen", f"tcp:{port}:interface=127.0.0.1", wait=False)
    code = second.wait_exit()
    assert code != 0, second.log
    assert f"cannot listen on tcp:{port}:interface=127.0.0.1" in second.log
    assert "Address already in use" in second.log
    assert "listening on" not in second.log
    # The first gateway is untouched.
    node = registered(first.url, "still-here")
    try:
        assert node.request("ping")["type"] == "pong"
    finally:
        node.close()


@pytest.mark.parametrize(
    "description, reason",
    [
        ("nonsense:foo", "Unknown endpoint type: 'nonsense'"),
        ("tcp:notaport:interface=127.0.0.1", "invalid literal for int()"),
    ],
)
def test_malformed_endpoint_fails_startup(launch, description: str, reason: str) -> None:
    gateway = launch("--listen", description, wait=False)
    assert gateway.wait_exit() != 0, gateway.log
    assert f"listen: bad endpoint {description!r}" in gateway.log
    assert reason in gateway.log
    assert "listening on" not in gateway.log


@pytest.mark.parametrize(
    "args, message",
    [
        (["--max-nodes", "abc"], "--max-nodes: expected a whole number, got 'abc'"),
        (["--max-nodes", "0"], "--max-nodes: must be at least 1, got 0"),
        (["--log-level", "loud"], "--log-level: expected one of debug, info, warn, error"),
        (["--port", "70000"], "--port: must be a TCP port (0-65535), got 70000"),
        (["--ping-interval", "500", "--ping-timeout", "400"], "pingTimeout: must be longer than pingInterval"),
    ],
)
def test_bad_option_value_fails_startup(launch, args: list[str], message: str) -> None:
    gateway = launch("--listen", LOOPBACK, *args, wait=False)
    assert gateway.wait_exit() != 0, gateway.log
    assert message in gateway.log
    assert "listening on" not in gateway.log


# --- config file -----------------------------------------------------------------


def test_config_port_host_name_and_log_level(launch, tmp_path: Path) -> None:
    """port+host choose the listener; name shows in /health; logLevel warn hides info lines."""
    port = free_tcp_port()
    config = write_config(
        tmp_path, {"port": port, "host": "127.0.0.1", "name": "from-file", "logLevel": "warn"}
    )
    gateway = launch("--config", str(config), wait=False)
    body = wait_healthy(health_url(port))
    assert body["name"] == "from-file"
    node = registered(f"ws://127.0.0.1:{port}/ws", "quiet")
    try:
        assert node.request("ping")["type"] == "pong"
        assert get_url(health_url(port))[1]["stats"]["totalNodes"] == 1
    finally:
        node.close()
    assert gateway.proc.poll() is None
    assert "listening on" not in gateway.log and "registered" not in gateway.log, gateway.log


def test_config_auth_limits_and_heartbeat_take_effect(launch, tmp_path: Path) -> None:
    """requireAuth+authToken, maxNodes, pingInterval/pingTimeout and logLevel from the file."""
    secret = "file-token-7f3a9c"
    config = write_config(
        tmp_path,
        {
            "requireAuth": True,
            "authToken": secret,
            "maxNodes": 2,
            "pingInterval": 250,
            "pingTimeout": 5000,
            "logLevel": "debug",
        },
    )
    gateway = launch("--config", str(config), "--listen", LOOPBACK)
    url = gateway.url

    anonymous = Node(url)
    expect_error(anonymous.register("anon"), "AUTH_FAILED")
    assert expect_closed(anonymous)[0] == 1008
    wrong = Node(url)
    expect_error(wrong.register("wrong", token="not-" + secret), "AUTH_FAILED")
    assert expect_closed(wrong)[0] == 1008

    first = Node(url)
    second = Node(url)
    third = Node(url)
    try:
        ack = first.register("first", token=secret)
        assert ack["type"] == "ack", ack
        assert ack["payload"]["heartbeat"] == {"pingInterval": 250, "pingTimeout": 5000}
        assert second.register("second", token=secret)["type"] == "ack"
        expect_error(third.register("third", token=secret), "MAX_NODES_REACHED")
        assert expect_closed(third)[0] == 1013

        # The gateway's own heartbeat runs at the file's interval.
        ping = wait_until(lambda: first.recv(3.0)["type"] == "ping", 3.0, "a heartbeat ping")
        assert ping

        # /stats needs the token; the admitted nodes keep working.
        status, body = get_url(f"http://127.0.0.1:{gateway.port}/stats")
        assert status == 401 and body["error"]["code"] == "AUTH_FAILED"
        status, body = get_url(
            f"http://127.0.0.1:{gateway.port}/stats", headers={"Authorization": f"Bearer {secret}"}
        )
        assert status == 200 and body["nodes"]["totalNodes"] == 2
        assert first.join("auth-room")["type"] == "ack"
        assert second.join("auth-room")["type"] == "ack"
        broadcast_between(first, second, "auth-room", {"after": "refusals"})
    finally:
        for node in (first, second, third):
            node.close()
    assert "refused AUTH_FAILED" in gateway.log  # a debug-level line
    assert secret not in gateway.log


def test_command_line_overrides_config_file(launch, tmp_path: Path) -> None:
    file_port, flag_port = free_tcp_port(), free_tcp_port()
    config = write_config(
        tmp_path, {"port": file_port, "host": "127.0.0.1", "maxNodes": 1, "name": "from-file"}
    )
    gateway = launch(
        "--config", str(config), "--port", str(flag_port), "--host", "127.0.0.1",
        "--max-nodes", "2", "--name", "from-flag",
    )
    assert gateway.wait_listening() == [flag_port]
    assert f"listening on tcp:{flag_port}:interface=127.0.0.1" in gateway.log
    assert get_url(health_url(flag_port))[1]["name"] == "from-flag"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", file_port), timeout=2).close()
    url = f"ws://127.0.0.1:{flag_port}/ws"
    nodes = [registered(url, "one"), registered(url, "two")]
    extra = Node(url)
    try:
        expect_error(extra.register("three"), "MAX_NODES_REACHED")
        assert nodes[0].request("ping")["type"] == "pong"
    finally:
        for node in [*nodes, extra]:
            node.close()


@pytest.mark.parametrize(
    "values, message",
    [
        ({"port": 3000, "colour": "blue"}, "colour: unknown config key"),
        ({"maxNodes": "many"}, "maxNodes: expected a whole number, got 'many'"),
        ({"requireAuth": "yes"}, "requireAuth: expected true or false, got 'yes'"),
        ({"pingInterval": -5}, "pingInterval: must be at least 10, got -5"),
        ({"logLevel": "loud"}, "logLevel: expected one of"),
        ({"port": 70000}, "port: must be a TCP port (0-65535), got 70000"),
        ({"requireAuth": True}, "requireAuth: auth is on but neither a token nor a keyring"),
    ],
)
def test_bad_config_file_is_refused(launch, tmp_path: Path, values: dict[str, Any], message: str) -> None:
    config = write_config(tmp_path, values)
    gateway = launch("--config", str(config), "--listen", LOOPBACK, wait=False)
    assert gateway.wait_exit() != 0, gateway.log
    assert message in gateway.log
    assert "listening on" not in gateway.log


def test_config_file_that_is_not_json_is_refused(launch, tmp_path: Path) -> None:
    config = tmp_path / "broken.json"
    config.write_text('{"port": 3000,')
    gateway = launch("--config", str(config), "--listen", LOOPBACK, wait=False)
    assert gateway.wait_exit() != 0
    assert f"config file {config} is not valid JSON" in gateway.log
