"""How the client reaches a gateway's host: directly, or through Tor for a ``.onion`` name.

A ``.onion`` host is handed, as a name, to Tor's SOCKS port (txtorcon's
``TorClientEndpoint``): it is never looked up in DNS here, and only tor can
reach it. The SOCKS port is the client's ``tor_socks`` endpoint string
(``wingman_gateway.protocol.tor``: by default ``$WINGMAN_TOR_SOCKS``, else
``tcp:127.0.0.1:9050``, the system tor's).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.endpoints import HostnameEndpoint, clientFromString, wrapClientTLS
from twisted.web.iweb import IAgentEndpointFactory
from txtorcon import TorClientEndpoint
from zope.interface import implementer

from wingman_gateway.protocol.tor import DEFAULT_TOR_SOCKS, TOR_SOCKS_VARIABLE, is_onion, tor_socks

__all__ = ["DEFAULT_TOR_SOCKS", "TOR_SOCKS_VARIABLE", "AgentEndpoints", "endpoint_for", "is_onion", "tor_socks"]


def endpoint_for(reactor: Any, host: str, port: int, timeout: float, socks: str | None = None) -> Any:
    """A TCP endpoint to ``host:port``; through the SOCKS endpoint ``socks`` for a ``.onion`` host."""
    if is_onion(host):
        proxy = clientFromString(reactor, tor_socks(socks))
        return TorClientEndpoint(host, port, socks_endpoint=proxy, reactor=reactor)
    return HostnameEndpoint(reactor, host, port, timeout=timeout)


@implementer(IAgentEndpointFactory)
class AgentEndpoints:
    """``Agent.usingEndpointFactory``'s endpoints: ``endpoint_for``, TLS-wrapped for https."""

    def __init__(self, reactor: Any, policy: Any, timeout: float, socks: str | None = None) -> None:
        self.reactor = reactor
        self.policy = policy
        self.timeout = timeout
        self.socks = socks

    def endpointForURI(self, uri: Any) -> Any:
        endpoint = endpoint_for(self.reactor, uri.host.decode("ascii"), uri.port, self.timeout, self.socks)
        if uri.scheme == b"https":
            return wrapClientTLS(self.policy.creatorForNetloc(uri.host, uri.port), endpoint)
        return endpoint
