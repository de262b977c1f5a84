"""``--discovery mdns``: announce the gateway with DNS-SD over multicast DNS.

The announcer waits until the listeners are bound, then registers
``NAME._wingman-gateway._tcp.local.`` with the WebSocket listener's port, the
host's addresses and the TXT entries of ``records.txt_record``. A name
another responder answers for is not fatal: the gateway takes ``NAME-2``
(``-3``, ...), checked by asking for it, then zeroconf's probing. Stopping
sends goodbye packets, so browsers drop the gateway at once. A failure to
announce is logged and never stops the gateway.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any, Callable

import attrs
import ifaddr
from twisted.application.service import Service
from twisted.internet.defer import Deferred, ensureDeferred
from zeroconf import DNSQuestionType, ServiceInfo, Zeroconf
from zeroconf.asyncio import AsyncServiceInfo

from wingman_gateway.checks import ConfigError
from wingman_gateway.discovery.records import (
    SERVICE_TYPE,
    instance_name,
    sort_addresses,
    txt_record,
)
from wingman_gateway.discovery.zc import ZeroconfThread, describe_socket_error, when_done
from wingman_gateway.logs import get_logger
from wingman_gateway.offer import Bound, Offer

log = get_logger("wingman_gateway.discovery.mdns")

PROBE_MS = 750  # how long an instance name is asked for before it counts as free (RFC 6762 8.1)
MAX_RENAMES = 32


@attrs.frozen
class Addresses:
    """What to announce (A/AAAA records) and where to multicast (IPv4 interface addresses)."""

    announced: list[str]
    multicast: list[str] | None  # None: every interface


def _interface_ips(interface: str | None) -> list[tuple[str, bool]]:
    """(address, is IPv6) of one interface, or of all; ConfigError for an unknown name."""
    adapters = ifaddr.get_adapters()
    if interface is not None:
        chosen = [a for a in adapters if a.nice_name == interface or a.name == interface]
        if not chosen:
            known = ", ".join(sorted({a.nice_name for a in adapters}))
            raise ConfigError(f"mdnsInterface: no network interface named {interface!r} (have: {known})")
        adapters = chosen
    ips = []
    for adapter in adapters:
        for ip in adapter.ips:
            if ip.is_IPv4:
                ips.append((str(ip.ip), False))
            else:
                ips.append((str(ip.ip[0]).split("%", 1)[0], True))
    return ips


def select_addresses(bound_host: str, interface: str | None) -> Addresses:
    """The addresses a listener bound to ``bound_host`` is reachable at, per the interface choice."""
    ips = _interface_ips(interface)
    if interface is None:
        # The machine's own addresses; loopback only when there is nothing else.
        outside = [(a, v6) for a, v6 in ips if not ipaddress.ip_address(a).is_loopback]
        ips = outside or ips
    ips = [(a, v6) for a, v6 in ips if not (v6 and ipaddress.ip_address(a).is_link_local)]
    bound = ipaddress.ip_address(bound_host.split("%", 1)[0])
    if bound.is_unspecified:
        # 0.0.0.0 serves IPv4; '::' is dual-stack on Linux and serves both.
        announced = [a for a, v6 in ips if bound.version == 6 or not v6]
    else:
        announced = [a for a, _ in ips if ipaddress.ip_address(a) == bound]
    multicast = [a for a, v6 in ips if not v6] if interface is not None else None
    return Addresses(announced=sort_addresses(announced), multicast=multicast)


def _loopback_only(bound: Bound) -> bool:
    try:
        return ipaddress.ip_address((bound.host or "").split("%", 1)[0]).is_loopback
    except ValueError:
        return True


def websocket_listener(offer: Offer) -> Bound | None:
    """The listener to announce: the first TCP/TLS one, preferring one not bound to loopback."""
    network = list(offer.network)
    outside = [bound for bound in network if not _loopback_only(bound)]
    chosen = outside or network
    return chosen[0] if chosen else None


async def _free_name(wanted: str, zeroconf: Zeroconf) -> str:
    """``wanted``, or ``wanted-2``, ``wanted-3``... if another responder answers for it.

    zeroconf's own probing only notices a conflict it already has a PTR
    record for; asking for the instance itself finds a running holder. The
    question asks for multicast answers (QM): a unicast answer to port 5353
    reaches only one of the responders sharing that port on a host.
    """
    for number in range(1, MAX_RENAMES + 1):
        candidate = wanted if number == 1 else instance_name(wanted, f"-{number}")
        holder = AsyncServiceInfo(SERVICE_TYPE, f"{candidate}.{SERVICE_TYPE}")
        if not await holder.async_request(zeroconf, PROBE_MS, question_type=DNSQuestionType.QM):
            return candidate
    return instance_name(wanted, f"-{MAX_RENAMES + 1}")


async def _register(info: ServiceInfo, zeroconf: Zeroconf) -> str:
    wanted = info.name[: -len(SERVICE_TYPE) - 1]
    info.name = f"{await _free_name(wanted, zeroconf)}.{SERVICE_TYPE}"
    # allow_name_change still settles two gateways that start at the same moment.
    announced = await zeroconf.async_register_service(info, allow_name_change=True)
    await announced
    return info.name


async def _unregister(info: ServiceInfo, zeroconf: Zeroconf) -> None:
    goodbyes = await zeroconf.async_unregister_service(info)
    await goodbyes


class MdnsAnnouncer(Service):
    """Announces the gateway on the LAN while it runs."""

    def __init__(
        self, name: str, interface: str | None, offered: Callable[[], Deferred[Offer]], reactor: Any
    ) -> None:
        self.offered = offered
        self.reactor = reactor
        self.wanted = instance_name(name)
        self.interface: str | None = interface
        if self.interface is not None:
            _interface_ips(self.interface)  # an unknown interface stops startup
        self.info: ServiceInfo | None = None
        self.announced: str | None = None
        self.state = "starting"
        self._zeroconf: ZeroconfThread | None = None
        self._started: Deferred[None] | None = None
        self._stopped: Deferred[None] | None = None
        self.setName("mdns announcer")

    def report(self) -> dict[str, Any]:
        """For /health: the state and the name announced."""
        report: dict[str, Any] = {"state": self.state, "name": self.announced or self.wanted}
        if self.info is not None:
            report["port"] = self.info.port
            report["addresses"] = self.info.parsed_addresses()
        return report

    def startService(self) -> None:
        super().startService()
        self._started = ensureDeferred(self._announce())
        self._started.addErrback(self._failed)

    def _failed(self, failure: Any) -> None:
        reason = describe_socket_error(failure.value)
        self.state = f"failed: {reason}"
        log.error("mdns: cannot announce the gateway: {reason}", reason=reason)

    async def _announce(self) -> None:
        offer = await self.offered()
        bound = websocket_listener(offer)
        if bound is None or bound.host is None:
            self.state = "idle: no TCP or TLS listener to announce"
            log.warn("mdns: {state}", state=self.state)
            return
        addresses = select_addresses(bound.host, self.interface)
        if not addresses.announced:
            where = f"interface {self.interface}" if self.interface else "this host"
            self.state = f"idle: {bound.host} is not an address of {where}"
            log.warn("mdns: {state}", state=self.state)
            return
        properties = txt_record(
            version=offer.version, auth_required=offer.auth_required, secure=bound.tls,
            bridge=offer.bridge, ssh_port=offer.ssh_port,
            onion=offer.onion,
        )
        host = socket.gethostname().split(".")[0] or "wingman-gateway"
        self.info = ServiceInfo(
            SERVICE_TYPE, f"{self.wanted}.{SERVICE_TYPE}", port=bound.port, properties=properties,
            server=f"{host}.local.", parsed_addresses=addresses.announced,
        )
        self._zeroconf = await ZeroconfThread.open(self.reactor, addresses.multicast)
        info = self.info
        name = await self._zeroconf.run(lambda zeroconf: _register(info, zeroconf))
        self.announced = name[: -len(SERVICE_TYPE) - 1]
        self.state = "announced"
        if self.announced != self.wanted:
            log.warn("mdns: the name {wanted!r} is taken on this network; announced as {name!r}",
                     wanted=self.wanted, name=self.announced)
        log.info(
            "mdns: announced {name!r} ({type}) on port {port} at {addresses}",
            name=self.announced, type=SERVICE_TYPE, port=bound.port,
            addresses=", ".join(addresses.announced),
        )

    def stopService(self) -> Deferred[None]:
        """Send goodbyes and close zeroconf; safe to call more than once."""
        if self._stopped is None:
            if self.running:
                super().stopService()
            self._stopped = ensureDeferred(self._withdraw())
            self._stopped.addErrback(
                lambda failure: log.warn("mdns: withdrawing failed: {reason}", reason=failure.getErrorMessage())
            )
        return when_done(self._stopped)

    async def _withdraw(self) -> None:
        if self._started is not None:
            await self._started  # an announcement in progress ends first (bounded by probing)
        zeroconf, info = self._zeroconf, self.info
        if zeroconf is None:
            return
        if self.state == "announced" and info is not None:
            await zeroconf.run(lambda z: _unregister(info, z))
            log.info("mdns: withdrew {name!r} (goodbye sent)", name=self.announced)
        self.state = "stopped"
        await zeroconf.close()
