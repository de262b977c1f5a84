"""Who may connect and register: per-source and global caps, deadlines.

One client must not take every slot. ``Admission`` counts open connections
per source address and in all, and registered nodes per source; the
listeners ask it at accept time and the Router at ``register``. A source is
an IPv4 address, or the /64 an IPv6 address is in (one host usually holds a
whole /64). Sources in an exempt network (loopback by default) are not
capped per source; the global cap applies to everyone.

Past ``max_connections - reserve`` open connections a new connection is
*reserved*: it may only ask ``/health`` or use an existing bridge session,
so monitoring and nodes already registered keep working while new ones are
refused. Past ``max_connections`` connections are refused at accept.
"""

from __future__ import annotations

import functools
import ipaddress
import resource
from collections import Counter
from typing import Any, Iterable

import attrs

from wingman_gateway import errors
from wingman_gateway.checks import ConfigError
from wingman_gateway.connection import CLOSE_POLICY
from wingman_gateway.errors import GatewayError
from wingman_gateway.logs import get_logger

log = get_logger("wingman_gateway.admission")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK: tuple[Network, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)
# File descriptors kept free of client connections (listeners, logs, key ring, SSH).
SPARE_DESCRIPTORS = 64

# The outcome of accepting a connection.
ADMIT = "admit"
RESERVED = "reserved"
REFUSE = "refuse"


def check_networks(key: str, value: Any) -> tuple[Network, ...]:
    """Exempt networks: a list of CIDRs (``none``/empty list for none)."""
    if isinstance(value, str):
        value = [] if value.strip().lower() == "none" else [v for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{key}: expected a list of networks like 127.0.0.0/8, got {value!r}")
    networks = []
    for item in value:
        try:
            networks.append(ipaddress.ip_network(str(item).strip(), strict=False))
        except ValueError:
            raise ConfigError(f"{key}: {item!r} is not a network like 10.0.0.0/8 or ::1/128")
    return tuple(networks)


def descriptor_budget() -> int:
    """Connections the open-files limit leaves room for (``--max-connections 0``)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 65536
    return max(int(soft) - SPARE_DESCRIPTORS, 16)


@attrs.frozen
class AdmissionLimits:
    """Caps and deadlines at the edge. Times are seconds; 0 caps mean "from the fd limit"."""

    max_connections: int = 0
    reserve: int = 16
    max_connections_per_source: int = 64
    max_nodes_per_source: int = 32
    exempt: tuple[Network, ...] = LOOPBACK
    header_timeout: float = 10.0
    register_timeout: float = 30.0

    def connection_cap(self) -> int:
        return self.max_connections or descriptor_budget()


# Parsing an address was 4% of the gateway's time while nodes connect (every
# accept and every register asks); the same few sources come again and again.
@functools.lru_cache(maxsize=4096)
def counted_source(host: str | None) -> str | None:
    """The source a peer address counts under: the IPv4 address, an IPv6 /64; None if not IP."""
    if not host:
        return None
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        if address == ipaddress.IPv6Address(1):
            return "::1"
        return str(ipaddress.IPv6Network((int(address) >> 64 << 64, 64)))
    return str(address)


class Admission:
    """Counts connections and nodes per source; decides at accept and at register."""

    def __init__(self, limits: AdmissionLimits) -> None:
        self.limits = limits
        self.cap = limits.connection_cap()
        self.open = 0
        self._connections: Counter[str] = Counter()
        self._nodes: Counter[str] = Counter()
        self._exempt_cache: dict[str, bool] = {}
        self.refused = 0

    def exempt(self, source: str | None) -> bool:
        if source is None:
            return True  # Unix sockets, systemd-passed sockets of another family
        known = self._exempt_cache.get(source)
        if known is None:
            network = ipaddress.ip_network(source, strict=False)
            known = any(
                network.version == net.version and network.subnet_of(net)  # type: ignore[arg-type]  # same IP version, checked first
                for net in self.limits.exempt
            )
            if len(self._exempt_cache) < 4096:
                self._exempt_cache[source] = known
        return known

    # -- connections ------------------------------------------------------

    def connection_opened(self, source: str | None) -> str:
        """A connection was accepted: ADMIT, RESERVED (health and sessions only) or REFUSE."""
        if self.open >= self.cap:
            return self._refuse(source, f"{self.open} connections open (limit {self.cap})")
        if not self.exempt(source):
            assert source is not None
            if self._connections[source] >= self.limits.max_connections_per_source:
                return self._refuse(
                    source, f"{self._connections[source]} connections from it "
                    f"(limit {self.limits.max_connections_per_source})"
                )
            self._connections[source] += 1
        self.open += 1
        return RESERVED if self.open > self.cap - self.limits.reserve else ADMIT

    def connection_closed(self, source: str | None) -> None:
        self.open -= 1
        if not self.exempt(source):
            assert source is not None
            left = self._connections[source] - 1
            if left > 0:
                self._connections[source] = left
            else:
                del self._connections[source]

    def _refuse(self, source: str | None, why: str) -> str:
        self.refused += 1
        # One line per refusal would let a flood fill the log: every 100th is logged.
        if self.refused % 100 == 1:
            log.warn(
                "refusing connections from {source}: {why} ({refused} refused so far)",
                source=source or "-", why=why, refused=self.refused,
            )
        return REFUSE

    # -- nodes --------------------------------------------------------------

    def check_register(self, address: str | None) -> None:
        """Raise ``MAX_NODES_REACHED`` if ``address``'s source already holds its share of nodes."""
        source = counted_source(address)
        if self.exempt(source):
            return
        assert source is not None
        limit = self.limits.max_nodes_per_source
        if self._nodes[source] >= limit:
            raise GatewayError(
                errors.MAX_NODES_REACHED,
                f"too many nodes from {source} ({limit} at most per address)",
                details={"limit": limit, "scope": "source"},
                fatal=True,
            )

    def node_registered(self, address: str | None) -> None:
        source = counted_source(address)
        if source is not None and not self.exempt(source):
            self._nodes[source] += 1

    def node_left(self, address: str | None) -> None:
        source = counted_source(address)
        if source is None or self.exempt(source):
            return
        left = self._nodes[source] - 1
        if left > 0:
            self._nodes[source] = left
        else:
            self._nodes.pop(source, None)


def drop_unregistered(connections: Iterable[Any], now: float, timeout: float,
                      disconnect: Any) -> int:
    """Close connections that did not register within ``timeout`` of connecting."""
    late = [
        node for node in connections
        if node.node_id is None and not node.closed and node.connected_at <= now - timeout
    ]
    reason = f"did not register within {timeout:g} s"
    for node in late:
        node.conn.close(CLOSE_POLICY, reason)
        disconnect(node, "register timeout")
    return len(late)
