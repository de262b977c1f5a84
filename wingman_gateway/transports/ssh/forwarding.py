"""``ssh -L``: forwarding to the gateway's own listeners, and nowhere else.

The allowed targets are computed from the bound listening ports at each
request, so ``tcp:0`` and socket-activated listeners count too. Host names
other than ``localhost`` are never resolved: the server cannot be made a
proxy through DNS.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Callable, Iterable

from twisted.conch.ssh.forwarding import SSHConnectForwardingChannel
from twisted.internet.interfaces import IAddress

from wingman_gateway.logs import get_logger

_ANY = (ipaddress.ip_address("0.0.0.0"), ipaddress.ip_address("::"))


class ForwardTargets:
    """Decides where a ``direct-tcpip`` channel may connect."""

    def __init__(self, addresses: Callable[[], Iterable[IAddress]]) -> None:
        self._addresses = addresses

    def allowed(self) -> dict[tuple[str, int], str]:
        """``(host as the client may name it, port)`` -> address to connect to."""
        allowed: dict[tuple[str, int], str] = {}
        for address in self._addresses():
            host, port = getattr(address, "host", None), getattr(address, "port", None)
            if host is None or port is None:
                continue  # Unix sockets: only TCP can be forwarded here
            ip = ipaddress.ip_address(host.split("%")[0])
            if ip in _ANY:
                # A wildcard listener (0.0.0.0, or dual-stack ::) takes loopback.
                allowed[("127.0.0.1", port)] = "127.0.0.1"
                allowed[("localhost", port)] = "127.0.0.1"
                if ip.version == 6:
                    allowed[("::1", port)] = "::1"
            else:
                allowed[(str(ip), port)] = str(ip)
                if ip.is_loopback:
                    allowed[("localhost", port)] = str(ip)
        return allowed

    def resolve(self, host: str, port: int) -> str | None:
        """The address to connect to for a requested ``host:port``, or None if refused."""
        name = host.strip().lower()
        if name.startswith("[") and name.endswith("]"):
            name = name[1:-1]
        try:
            name = str(ipaddress.ip_address(name))
        except ValueError:
            pass  # a host name: only "localhost" can match
        return self.allowed().get((name, port))


class GatewayForwardingChannel(SSHConnectForwardingChannel):
    """Conch's forwarding channel, on the injected reactor, with back-pressure.

    When the SSH client stops taking data (its window is full) the
    connection to the listener stops being read, so the listener's own
    slow-consumer bound applies instead of a buffer growing here.
    """

    _log = get_logger("wingman_gateway.ssh.conch")

    def __init__(self, hostport: tuple[str, int], reactor: Any, **kwargs: Any) -> None:
        super().__init__(hostport, **kwargs)
        self._reactor = reactor

    def stopWriting(self) -> None:
        if self.client is not None and self.client.transport is not None:
            self.client.transport.pauseProducing()

    def startWriting(self) -> None:
        if self.client is not None and self.client.transport is not None:
            self.client.transport.resumeProducing()
