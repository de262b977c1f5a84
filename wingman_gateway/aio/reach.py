"""How the asyncio client reaches a gateway's host: TLS, and Tor for a ``.onion`` name.

A ``.onion`` host goes to Tor's SOCKS port as a name (``socks5h``): it is
never looked up in DNS here. Everything else is connected to directly; the
environment's proxy settings are not used.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx

from wingman_gateway.aio.tls import client_context
from wingman_gateway.protocol.tor import is_onion, socks_proxy_url, tor_socks

try:  # httpx passes a SOCKS port's malformed (or missing) reply on unmapped
    from socksio.exceptions import ProtocolError as _SocksReplyError

    REQUEST_ERRORS: tuple[type[Exception], ...] = (httpx.HTTPError, _SocksReplyError)
except ImportError:  # without SOCKS support, no .onion gateway
    REQUEST_ERRORS = (httpx.HTTPError,)


def proxy_for(url: str, socks: str | None) -> str | None:
    """The SOCKS proxy URL for a ``.onion`` gateway URL, else None (direct)."""
    if is_onion(urlsplit(url).hostname):
        return socks_proxy_url(tor_socks(socks))
    return None


def httpx_options(url: str, *, ca_file: str | None, timeout: float, socks: str | None) -> dict[str, Any]:
    """``httpx.AsyncClient`` options for requests to the gateway at ``url``."""
    secure = url.lower().startswith("https:")
    return {
        "verify": client_context(ca_file) if secure else True,
        "timeout": timeout,
        "trust_env": False,
        "proxy": proxy_for(url, socks),
    }
