"""TLS for the asyncio client: the chain (system store or a CA file) and the host name."""

from __future__ import annotations

import ssl

from wingman_gateway.protocol.errors import TLS_ERROR, ClientError


def client_context(ca_file: str | None) -> ssl.SSLContext:
    """Verifies the certificate chain and the host name or IP address."""
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as error:
        raise ClientError(TLS_ERROR, f"cannot load CA file {ca_file!r}: {error}") from error


def tls_text(error: BaseException | None) -> str | None:
    """A description if ``error`` (or its cause) is a certificate or TLS failure."""
    seen = 0
    while error is not None and seen < 5:
        if isinstance(error, ssl.SSLCertVerificationError):
            return f"TLS handshake failed: certificate verify failed: {error.verify_message or error}"
        if isinstance(error, ssl.SSLError):
            return f"TLS handshake failed: {error.reason or error}"
        error = error.__cause__ or error.__context__
        seen += 1
    return None
