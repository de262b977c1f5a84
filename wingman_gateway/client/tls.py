"""Client TLS: certificate and host-name checks, and naming their failures."""

from __future__ import annotations

from typing import Any

from cryptography import x509
from OpenSSL import SSL
from OpenSSL.crypto import X509
from service_identity import CertificateError, VerificationError
from twisted.internet.ssl import (
    Certificate,
    optionsForClientTLS,
    platformTrust,
    trustRootFromCertificates,
)
from twisted.python.failure import Failure
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from wingman_gateway.client.errors import TLS_ERROR, ClientError


def trust_root(ca_file: str | None) -> Any:
    """The PEM CA bundle in ``ca_file``, or the system trust store."""
    if ca_file is None:
        return platformTrust()
    try:
        with open(ca_file, "rb") as pem:
            certificates = x509.load_pem_x509_certificates(pem.read())
    except (OSError, ValueError) as error:
        raise ClientError(TLS_ERROR, f"cannot load CA file {ca_file!r}: {error}") from error
    return trustRootFromCertificates(
        [Certificate(X509.from_cryptography(cert)) for cert in certificates]
    )


def client_options(hostname: str, ca_file: str | None) -> Any:
    """Options that verify the server's certificate chain and its host name."""
    return optionsForClientTLS(hostname, trustRoot=trust_root(ca_file))


def tls_failure(reason: Failure | None) -> str | None:
    """A description if ``reason`` is a certificate or TLS failure, else None."""
    if reason is None:
        return None
    error = reason.value
    if isinstance(error, (VerificationError, CertificateError)):
        return f"server certificate does not match the host name: {error}"
    if isinstance(error, SSL.Error):
        return f"TLS handshake failed: {_ssl_text(error)}"
    return None


def _ssl_text(error: SSL.Error) -> str:
    """OpenSSL's error list as one readable line."""
    try:
        return "; ".join(str(entry[2]) for entry in error.args[0]) or str(error)
    except (IndexError, TypeError):
        return str(error)


@implementer(IPolicyForHTTPS)
class VerifyingPolicy:
    """https:// is verified like wss://: the chain (system or ``ca_file``) and the host name."""

    def __init__(self, ca_file: str | None) -> None:
        self.ca_file = ca_file

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        return client_options(hostname.decode("ascii"), self.ca_file)


def failure_text(failure: Failure) -> tuple[str, bool]:
    """A readable reason for a failed request, and whether it was TLS."""
    reasons = [failure]
    for _ in range(3):
        nested = [inner for f in reasons for inner in getattr(f.value, "reasons", ()) or ()]
        if not nested:
            break
        reasons = nested
    for reason in reasons:
        tls = tls_failure(reason)
        if tls is not None:
            return tls, True
        if isinstance(reason.value, ClientError):
            return reason.value.message, reason.value.code == TLS_ERROR
    return "; ".join(_message(r) for r in reasons), False


def _message(reason: Failure) -> str:
    """``reason``'s message; an error that only wraps another failure (as
    txtorcon's ``SocksError`` does when the SOCKS port hangs up) gives that one's."""
    args: tuple[Any, ...] = getattr(reason.value, "args", ())
    if len(args) == 1 and isinstance(args[0], Failure):
        return f"{type(reason.value).__name__}: {args[0].getErrorMessage()}"
    return reason.getErrorMessage()
