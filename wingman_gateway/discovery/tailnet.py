"""``--discovery tailscale``: the gateway finds, logs and reports its tailnet URLs.

Once listening, and then every minute, the gateway asks the local
tailscaled (LocalAPI) for its own Tailscale IPs and MagicDNS name, works out
which listeners the tailnet can reach, and reports the URLs in ``/health``
(logging them whenever they change). Clients find it with ``wingman gateway
discover --tailscale``. tailscaled being down is logged, never fatal.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import LoopingCall

from wingman_gateway.discovery.records import gateway_urls
from wingman_gateway.discovery.tailscale import Device, TailscaleError, devices_from_status, local_status
from wingman_gateway.logs import get_logger
from wingman_gateway.offer import Offer

log = get_logger("wingman_gateway.discovery.tailscale")

REFRESH_SECONDS = 60.0


def tailnet_urls(me: Device, offer: Offer) -> list[str]:
    """URLs (Tailscale IPs, then MagicDNS name) of the listeners the tailnet can reach."""
    urls: list[str] = []
    for bound in offer.network:
        assert bound.host is not None and bound.port is not None
        address = ipaddress.ip_address(bound.host.split("%", 1)[0])
        if address.is_unspecified:
            ips = [ip for ip in me.ips if address.version == 6 or ipaddress.ip_address(ip).version == 4]
        else:
            ips = [ip for ip in me.ips if ipaddress.ip_address(ip) == address]
        if not ips:
            continue
        names = ips + ([me.dns_name] if me.dns_name else [])
        urls += [u for u in gateway_urls(names, bound.port, bound.tls) if u not in urls]
    return urls


class TailnetReporter(Service):
    """Keeps the gateway's tailnet URLs for logs and ``/health``."""

    def __init__(self, socket_path: str, offered: Callable[[], Deferred[Offer]], reactor: Any) -> None:
        self.offered = offered
        self.offer: Offer | None = None
        self.reactor = reactor
        self.socket_path = socket_path
        self.tags: tuple[str, ...] = ()
        self.me: Device | None = None
        self.urls: list[str] = []
        self.error: str | None = None
        self._loop = LoopingCall(self._refresh_logged)
        self._loop.clock = reactor
        self.setName("tailnet reporter")

    def report(self) -> dict[str, Any]:
        report: dict[str, Any] = {"urls": list(self.urls), "socket": self.socket_path}
        if self.me is not None:
            report.update(hostName=self.me.host_name, dnsName=self.me.dns_name,
                          ips=list(self.me.ips), tags=list(self.me.tags))
        if self.error is not None:
            report["error"] = self.error
        return report

    def startService(self) -> None:
        super().startService()
        self.offered().addCallback(self._start)

    def _start(self, offer: Offer) -> None:
        self.offer, self.tags = offer, offer.tags
        if self.running and not self._loop.running:
            self._loop.start(REFRESH_SECONDS, now=True)

    def stopService(self) -> Deferred[None] | None:
        if self.running:
            super().stopService()
        if self._loop.running:
            self._loop.stop()
        return None

    def _refresh_logged(self) -> Deferred[None]:
        """One refresh; an unexpected error is logged and the next refresh still runs."""
        refreshed = ensureDeferred(self.refresh())
        refreshed.addErrback(lambda failure: log.failure("tailscale: refresh failed", failure))
        return refreshed

    async def refresh(self) -> None:
        """Ask tailscaled again; log what changed. Never raises (the loop goes on)."""
        try:
            status = await local_status(self.reactor, self.socket_path)
        except TailscaleError as error:
            if self.error != str(error):
                log.warn("tailscale: cannot find this gateway's tailnet addresses: {reason}",
                         reason=str(error))
            self.error, self.urls = str(error), []
            return
        me = next((d for d in devices_from_status(status) if d.is_self), None)
        if me is None:
            problem = "tailscaled reports no Tailscale IP for this machine (logged out?)"
            if self.error != problem:
                log.warn("tailscale: {reason}", reason=problem)
            self.error, self.urls, self.me = problem, [], None
            return
        assert self.offer is not None
        urls = tailnet_urls(me, self.offer)
        if urls != self.urls or self.error is not None:
            if urls:
                log.info("tailscale: reachable on the tailnet at {urls}", urls=", ".join(urls))
            else:
                log.warn("tailscale: no listener is reachable from the tailnet ({ips}): listen on "
                         "0.0.0.0, :: or a Tailscale IP", ips=", ".join(me.ips))
        missing = [t for t in self.tags if t not in me.tags]
        if missing and (self.me is None or self.me.tags != me.tags):
            log.warn("tailscale: this machine lacks the tags {tags}; clients filtering on them "
                     "will not find it", tags=", ".join(missing))
        self.me, self.urls, self.error = me, urls, None
