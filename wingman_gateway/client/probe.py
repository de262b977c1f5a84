"""The /health probe: is a wingman-gateway answering at this address?

Over http(s), a Unix socket (``unix:SOCKET``), or TLS trusting a CA file
or exactly one pinned certificate (the one a local gateway was started
with). Shared by the ``wingman`` commands and by discovery (which probes
tailnet devices), so it lives with the client library.
"""

from __future__ import annotations

import json
from typing import Any, Sequence
from urllib.parse import urlsplit, urlunsplit

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.defer import Deferred, DeferredList, ensureDeferred
from twisted.python.failure import Failure
from twisted.web.client import Agent, readBody
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from wingman_gateway.client.endpoints import AgentEndpoints
from wingman_gateway.client.errors import ClientError
from wingman_gateway.client.tls import VerifyingPolicy, failure_text
from wingman_gateway.protocol.load import by_load, is_gateway_report
from wingman_gateway.protocol.urls import beside
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


def agent_for(
    reactor: Any, url: str, trust: Trust, timeout: float, path: str = "/health", socks: str | None = None,
) -> tuple[Agent, str]:
    """An Agent that reaches ``url``, and the http(s) URL to request from it
    (for ``unix:SOCKET``, ``path`` over that socket; a ``.onion`` host
    through Tor's SOCKS endpoint ``socks``)."""
    if is_unix(url):
        socket = url[len(UNIX_PREFIX):]
        return Agent.usingEndpointFactory(reactor, UnixSocket(reactor, socket, timeout)), (
            "http://localhost" + path)
    if trust.ca_file is None and trust.certificate is not None:
        policy: Any = PinnedPolicy(trust.certificate)
    else:
        policy = VerifyingPolicy(trust.ca_file)
    return Agent.usingEndpointFactory(reactor, AgentEndpoints(reactor, policy, timeout, socks)), url


DEFAULT_PORT = 3000


class HealthError(Exception):
    """The gateway did not answer, or not as a healthy gateway."""


def health_url(target: str) -> str:
    """The /health URL for a gateway given as host[:port] (port 3000 when none is
    given), or as an http(s):// or ws(s):// URL (its own port, or the scheme's,
    and its path prefix kept); ``unix:SOCKET`` stays as it is."""
    if is_unix(target):
        return target
    if "://" not in target:
        parts = urlsplit("http://" + target)
        netloc = parts.netloc if parts.port else f"{parts.netloc}:{DEFAULT_PORT}"
        return urlunsplit(("http", netloc, "/health", "", ""))
    return beside(target, "/health")


async def fetch_health(
    reactor: Any, url: str, timeout: float = 5.0, trust: Trust = Trust(), socks: str | None = None,
) -> dict[str, Any]:
    """GET /health (``url`` is its http(s) URL, or ``unix:SOCKET``); the report, or HealthError saying why not."""
    try:
        agent, request_url = agent_for(reactor, url, trust, timeout, socks=socks)
    except (OSError, ValueError, ClientError) as error:
        raise HealthError(f"{url}: cannot use the TLS trust given: {error}") from None
    request: Deferred[Any] = agent.request(b"GET", request_url.encode("ascii"))
    request.addTimeout(timeout, reactor)
    try:
        response = await request
        body = await readBody(response)
    except Exception:  # connection refused, timeout, TLS …
        reason, _ = failure_text(Failure())
        raise HealthError(f"{url}: {reason}") from None
    if response.code != 200:
        raise HealthError(f"{url}: HTTP {response.code}")
    try:
        report = json.loads(body)
    except ValueError:
        raise HealthError(f"{url}: not a JSON health report") from None
    if not is_gateway_report(report):
        raise HealthError(f"{url}: not a wingman-gateway")
    return dict(report)


async def rank_by_load(
    reactor: Any, urls: Sequence[str], timeout: float, trust: Trust = Trust(), socks: str | None = None,
) -> list[str]:
    """``urls`` (gateways of one cluster) best first (``protocol.load.by_load``):
    every gateway's ``/health`` is asked at once."""
    probes = [ensureDeferred(fetch_health(reactor, health_url(url), timeout, trust, socks)) for url in urls]
    results = await DeferredList(probes, consumeErrors=True)
    return by_load(urls, [report if answered else None for answered, report in results])
