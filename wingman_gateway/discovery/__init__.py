"""Discovery: announcing a gateway (mDNS, Tailscale) and finding gateways.

``discovery_services`` adds the announcers ``--discovery`` asks for to the
gateway's MultiService and reports their state in ``/health`` under
``discovery``. zeroconf is imported only when mDNS is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wingman_gateway.service import GatewayService


def discovery_services(gateway: "GatewayService", reactor: Any) -> list[Any]:
    """The announcer services for ``gateway.config.discovery``, already parented."""
    services: dict[str, Any] = {}
    methods = gateway.config.discovery.methods
    if "mdns" in methods:
        from wingman_gateway.discovery.mdns import MdnsAnnouncer

        services["mdns"] = MdnsAnnouncer(gateway, reactor)
    if "tailscale" in methods:
        from wingman_gateway.discovery.tailnet import TailnetReporter

        services["tailscale"] = TailnetReporter(gateway, reactor)
    for service in services.values():
        service.setServiceParent(gateway)
    if services:
        gateway.router.reports["discovery"] = lambda: {
            method: service.report() for method, service in services.items()
        }
    return list(services.values())
