"""``--onion``: the gateway as a Tor v3 onion service, reachable without an open port.

``onion_service`` builds the service from the settings; ``listener_target``
picks what it publishes: the first TCP (or TLS) listener, as bound. txtorcon
and the key code are imported only when ``--onion`` is used.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any, Iterable

from wingman_gateway.onion.settings import OnionSettings

if TYPE_CHECKING:
    from wingman_gateway.onion.service import OnionService, Target

__all__ = ["OnionSettings", "listener_target", "onion_service"]


def onion_service(settings: OnionSettings | None, reactor: Any) -> "OnionService | None":
    """The onion service for ``--onion``, or None when it is off; a bad file stops startup."""
    if settings is None:
        return None
    from wingman_gateway.config import ConfigError
    from wingman_gateway.onion.service import OnionService

    try:
        return OnionService(settings, reactor)
    except ValueError as error:  # the key or client key file, or the control endpoint
        raise ConfigError(str(error)) from error


def listener_target(listeners: Iterable[tuple[str, Any]]) -> "Target | None":
    """The first ``(description, bound port)`` on TCP; a wildcard address is reached on loopback."""
    from wingman_gateway.onion.service import Target

    for description, port in listeners:
        address = port.getHost() if port is not None else None
        host = getattr(address, "host", None)
        if address is None or host is None:
            continue
        bound = ipaddress.ip_address(host.split("%", 1)[0])
        if bound.is_unspecified:
            host = "::1" if bound.version == 6 else "127.0.0.1"
        return Target(host, address.port, secure=description.startswith(("ssl:", "tls:")))
    return None
