"""What a running gateway offers, as one frozen value.

The wiring builds it once every listener is bound and hands it to what
tells the world about the gateway (mDNS, the tailnet report, the ports
file), so none of those needs the service or its children.
"""

from __future__ import annotations

from typing import Any

import attrs

def is_tls(description: str) -> bool:
    """Whether a ``--listen`` endpoint serves TLS (so its URLs are ``wss://``)."""
    return description.startswith(("ssl:", "tls:"))


@attrs.frozen
class Bound:
    """One bound listener: its endpoint string and where it listens."""

    description: str
    host: str | None = None  # None for a Unix socket
    port: int | None = None
    path: str | None = None  # a Unix socket's path
    tls: bool = False

    @classmethod
    def of(cls, description: str, address: Any) -> "Bound":
        """From a listening port's ``getHost()``."""
        host, port = getattr(address, "host", None), getattr(address, "port", None)
        if host is None or port is None:
            name = getattr(address, "name", None)
            path = name.decode("utf-8", "surrogateescape") if isinstance(name, bytes) else name
            return cls(description, path=path, tls=is_tls(description))
        return cls(description, host=host, port=port, tls=is_tls(description))


@attrs.frozen
class Offer:
    """The gateway as others may see it."""

    name: str
    version: str
    auth_required: bool
    listeners: tuple[Bound, ...]
    bridge: bool
    ssh: Bound | None = None  # the built-in SSH server (--ssh)
    ssh_fingerprint: str | None = None  # its host key's SHA256 fingerprint
    tags: tuple[str, ...] = ()  # tailnet tags clients look for
    onion: str | None = None  # the onion service's URL (--onion)
    metrics: Bound | None = None  # the private /metrics endpoint (--metrics-listen)

    @property
    def ssh_port(self) -> int | None:
        return self.ssh.port if self.ssh is not None else None

    @property
    def network(self) -> tuple[Bound, ...]:
        """The TCP (and TLS) listeners, in the order given."""
        return tuple(bound for bound in self.listeners if bound.port is not None)
