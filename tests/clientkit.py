"""Helpers for the client library's tests: bounded waits on the running reactor."""

from __future__ import annotations

import datetime
import ipaddress
import os
import signal
from pathlib import Path
from typing import Any, Awaitable, Callable

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.internet import defer, reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from support import GatewayProcess
from wingman_gateway.client import GatewayClient, Message


async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)


async def within(awaitable: Awaitable[Any], seconds: float = 10.0) -> Any:
    """Await ``awaitable`` for at most ``seconds`` (defer.TimeoutError after)."""
    return await defer.ensureDeferred(awaitable).addTimeout(seconds, reactor)


class _Arrivals:
    """Wakes one waiter whenever something is appended."""

    def __init__(self) -> None:
        self._arrival: Deferred[None] | None = None

    def notify(self) -> None:
        arrival, self._arrival = self._arrival, None
        if arrival is not None and not arrival.called:
            arrival.callback(None)

    async def wait(self, seconds: float) -> None:
        self._arrival = Deferred()
        try:
            await self._arrival.addTimeout(seconds, reactor)
        except defer.TimeoutError:
            pass


class Inbox(_Arrivals):
    """Every Message a client delivers to its listeners, taken out in order."""

    def __init__(self, client: GatewayClient) -> None:
        super().__init__()
        self.messages: list[Message] = []
        self.remove = client.add_listener(self._got)

    def _got(self, message: Message) -> None:
        self.messages.append(message)
        self.notify()

    async def next(
        self, kind: str | None = None, where: Callable[[Message], bool] | None = None, timeout: float = 5.0
    ) -> Message:
        """The first waiting message of ``kind`` matching ``where`` (bounded)."""
        deadline = reactor.seconds() + timeout
        while True:
            for index, message in enumerate(self.messages):
                if (kind is None or message.type == kind) and (where is None or where(message)):
                    del self.messages[index]
                    return message
            left = deadline - reactor.seconds()
            if left <= 0:
                raise AssertionError(f"no {kind or 'message'} within {timeout} s; have {self.messages}")
            await self.wait(left)

    def without(self, *kinds: str) -> list[Message]:
        return [message for message in self.messages if message.type not in kinds]


class StateLog(_Arrivals):
    """The state events a client emits, in order."""

    def __init__(self, client: GatewayClient) -> None:
        super().__init__()
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.remove = client.on_state(self._got)

    def _got(self, event: str, details: dict[str, Any]) -> None:
        self.events.append((event, details))
        self.notify()

    @property
    def names(self) -> list[str]:
        return [event for event, _ in self.events]

    async def wait_for(self, event: str, timeout: float = 15.0) -> dict[str, Any]:
        """Details of the first ``event`` emitted (bounded)."""
        deadline = reactor.seconds() + timeout
        while True:
            for name, details in self.events:
                if name == event:
                    return details
            left = deadline - reactor.seconds()
            if left <= 0:
                raise AssertionError(f"no {event!r} within {timeout} s; events: {self.names}")
            await self.wait(left)


async def stop_gateway(gateway: GatewayProcess, timeout: float = 10.0) -> int:
    """SIGTERM our gateway by pid and wait for it without blocking the reactor."""
    proc = gateway.proc
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
    deadline = reactor.seconds() + timeout
    while proc.poll() is None and reactor.seconds() < deadline:
        await sleep(0.05)
    return gateway.stop()


# --- a test PKI ---------------------------------------------------------------


@attrs.frozen
class Pki:
    ca: Path
    key: Path
    cert: Path

    def endpoint(self) -> str:
        return f"ssl:0:interface=127.0.0.1:privateKey={self.key}:certKey={self.cert}"


def _ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    now = datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_pki(directory: Path, names: list[x509.GeneralName]) -> Pki:
    """A fresh CA and a server certificate it signed for ``names`` (the SANs)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = _ca(f"wingman client test CA {directory.name}")
    now = datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wingman test server")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
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


LOCAL_NAMES: list[x509.GeneralName] = [
    x509.DNSName("localhost"),
    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
]
WRONG_NAMES: list[x509.GeneralName] = [x509.DNSName("wrong.example")]
