"""``--onion``: the gateway as a Tor v3 onion service, reachable without an open port.

``onion_service`` builds the service from the settings; ``listener_target``
picks what it publishes: the first TCP (or TLS) listener, as bound. txtorcon
and the key code are imported only when ``--onion`` is used.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from wingman_gateway.checks import ConfigError
from wingman_gateway.offer import Offer
from wingman_gateway.onion.settings import OnionSettings

if TYPE_CHECKING:
    from wingman_gateway.onion.service import OnionService, Target

__all__ = ["OnionSettings", "listener_target", "onion_service"]


def onion_service(settings: OnionSettings | None, reactor: Any) -> "OnionService | None":
    """The onion service for ``--onion``, or None when it is off; a bad file stops startup."""
    if settings is None:
        return None
    from wingman_gateway.onion.service import OnionService

    try:
        return OnionService(settings, reactor)
    except ValueError as error:  # the key or client key file, or the control endpoint
        raise ConfigError(str(error)) from error


def listener_target(offer: Offer) -> "Target | None":
    """The first TCP (or TLS) listener the gateway offers; a wildcard address is reached on loopback."""
    from wingman_gateway.onion.service import Target

    for bound in offer.network:
        assert bound.host is not None and bound.port is not None
        host = bound.host
        address = ipaddress.ip_address(host.split("%", 1)[0])
        if address.is_unspecified:
            host = "::1" if address.version == 6 else "127.0.0.1"
        return Target(host, bound.port, secure=bound.tls)
    return None
