"""Which SOCKS port reaches ``.onion`` gateways, for both Python clients (no I/O).

A ``.onion`` host is only ever handed, as a name, to Tor's SOCKS port; it is
never looked up in DNS by the client. The port is given as a Twisted client
endpoint string (``tcp:127.0.0.1:9050``): the ``tor_socks`` option of a
client, else ``$WINGMAN_TOR_SOCKS``, else the system tor's port.
"""

from __future__ import annotations

import os
import re

from wingman_gateway.protocol.errors import CONNECTION_FAILED, ClientError

TOR_SOCKS_VARIABLE = "WINGMAN_TOR_SOCKS"
DEFAULT_TOR_SOCKS = "tcp:127.0.0.1:9050"


def is_onion(host: str | None) -> bool:
    return bool(host) and str(host).lower().rstrip(".").endswith(".onion")


def tor_socks(given: str | None = None) -> str:
    """The SOCKS endpoint string: ``given``, else ``$WINGMAN_TOR_SOCKS``, else the default."""
    return given or os.environ.get(TOR_SOCKS_VARIABLE) or DEFAULT_TOR_SOCKS


def _fields(endpoint: str) -> list[str]:
    """An endpoint string's ``:``-separated fields (``\\:`` is a colon inside one)."""
    return [field.replace("\\:", ":") for field in re.split(r"(?<!\\):", endpoint)]


def socks_proxy_url(endpoint: str) -> str:
    """``socks5h://HOST:PORT`` for a ``tcp:HOST:PORT`` endpoint string (``h``: tor resolves).

    For clients that take a proxy URL rather than a Twisted endpoint; only
    TCP endpoints can be expressed that way.
    """
    kind, *rest = _fields(endpoint)
    named = dict(field.split("=", 1) for field in rest if "=" in field)
    positional = [field for field in rest if "=" not in field]
    host = named.get("host") or (positional[0] if positional else "")
    port = named.get("port") or (positional[1] if len(positional) > 1 else "")
    if kind != "tcp" or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ClientError(
            CONNECTION_FAILED, f"Tor's SOCKS port must be a tcp:HOST:PORT endpoint here, not {endpoint!r}"
        )
    return f"socks5h://[{host}]:{port}" if ":" in host else f"socks5h://{host}:{port}"
