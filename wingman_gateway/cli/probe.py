"""HTTP requests to a gateway over any listener kind it serves.

``http://`` and ``https://`` URLs, and ``unix:/PATH`` for a Unix-socket
listener. ``https://`` is verified against a CA bundle (``--ca-file``) or,
for a gateway this command started, by accepting exactly the certificate it
was started with (self-signed certificates included, whatever names they
carry).
"""

from __future__ import annotations

from typing import Any

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.web.client import Agent
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from wingman_gateway.client.tls import VerifyingPolicy
from wingman_gateway.unixhttp import UnixSocket

UNIX_PREFIX = "unix:"


@attrs.frozen
class Trust:
    """How an ``https://`` gateway is verified."""

    ca_file: str | None = None  # the chain and host name, against this PEM bundle
    certificate: str | None = None  # else: exactly this certificate (PEM file), any name


def is_unix(url: str) -> bool:
    return url.startswith(UNIX_PREFIX)


def certificate_digest(path: str) -> bytes:
    """SHA-256 of the first certificate in a PEM file."""
    with open(path, "rb") as pem:
        return x509.load_pem_x509_certificates(pem.read())[0].fingerprint(hashes.SHA256())


@implementer(IOpenSSLClientConnectionCreator)
class _Pinned:
    """A TLS client that accepts one certificate, by its SHA-256 digest."""

    def __init__(self, digest: bytes) -> None:
        self.digest = digest

    def _verify(self, connection: Any, certificate: Any, errno: int, depth: int, ok: int) -> bool:
        if depth > 0:
            return True  # the chain does not matter: the end certificate is known exactly
        return bool(certificate.to_cryptography().fingerprint(hashes.SHA256()) == self.digest)

    def clientConnectionForTLS(self, protocol: Any) -> SSL.Connection:
        context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        context.set_verify(SSL.VERIFY_PEER, self._verify)
        connection = SSL.Connection(context, None)
        connection.set_app_data(protocol)
        return connection


@implementer(IPolicyForHTTPS)
class PinnedPolicy:
    """https:// to a gateway whose certificate file is at hand."""

    def __init__(self, certificate: str) -> None:
        self.digest = certificate_digest(certificate)

    def creatorForNetloc(self, hostname: bytes, port: int) -> _Pinned:
        return _Pinned(self.digest)


def agent_for(reactor: Any, url: str, trust: Trust, timeout: float, path: str = "/health") -> tuple[Agent, str]:
    """An Agent that reaches ``url``, and the http(s) URL to request from it
    (for ``unix:SOCKET``, ``path`` over that socket)."""
    if is_unix(url):
        socket = url[len(UNIX_PREFIX):]
        return Agent.usingEndpointFactory(reactor, UnixSocket(reactor, socket, timeout)), (
            "http://localhost" + path)
    if trust.ca_file is None and trust.certificate is not None:
        policy: Any = PinnedPolicy(trust.certificate)
    else:
        policy = VerifyingPolicy(trust.ca_file)
    return Agent(reactor, contextFactory=policy, connectTimeout=timeout), url
