"""Discovery: announcing a gateway (mDNS, Tailscale) and finding gateways.

``announcers`` makes the services ``--discovery`` asks for from plain
values; the wiring parents them and reports their state in ``/health``
under ``discovery``. zeroconf is imported only when mDNS is used.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from twisted.internet.defer import Deferred

from wingman_gateway.discovery.settings import DiscoverySettings
from wingman_gateway.offer import Offer


class Announcer(Protocol):
    """What the wiring uses of a discovery method's service."""

    def setServiceParent(self, parent: Any) -> Any: ...

    def stopService(self) -> Any: ...

    def report(self) -> dict[str, Any]:
        """Its state, for ``/health`` under ``discovery``."""


def announcers(
    settings: DiscoverySettings,
    name: str,
    mdns_interface: str | None,
    tailscale_socket: str,
    offered: Callable[[], Deferred[Offer]],
    reactor: Any,
) -> dict[str, Announcer]:
    """The announcer of each method in ``settings``, by method name.

    ``name`` is the gateway's name (the mDNS instance name unless the
    settings give another); ``offered`` fires with what the gateway
    offers once it listens.
    """
    services: dict[str, Announcer] = {}
    if "mdns" in settings.methods:
        from wingman_gateway.discovery.mdns import MdnsAnnouncer

        services["mdns"] = MdnsAnnouncer(settings.name or name, mdns_interface, offered, reactor)
    if "tailscale" in settings.methods:
        from wingman_gateway.discovery.tailnet import TailnetReporter

        services["tailscale"] = TailnetReporter(tailscale_socket, offered, reactor)
    return services
