"""How the client reaches a gateway's host: directly, or through Tor for a ``.onion`` name.

A ``.onion`` host is handed, as a name, to Tor's SOCKS port (txtorcon's
``TorClientEndpoint``): it is never looked up in DNS here, and only tor can
reach it. The SOCKS port is ``$WINGMAN_TOR_SOCKS`` (a Twisted client
endpoint string, as ``wingman gateway join --tor-socks`` sets it), by default
``tcp:127.0.0.1:9050``, the system tor's.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.endpoints import HostnameEndpoint, clientFromString, wrapClientTLS
from twisted.web.iweb import IAgentEndpointFactory
from txtorcon import TorClientEndpoint
from zope.interface import implementer

TOR_SOCKS_VARIABLE = "WINGMAN_TOR_SOCKS"
DEFAULT_TOR_SOCKS = "tcp:127.0.0.1:9050"


def is_onion(host: str) -> bool:
    return host.lower().rstrip(".").endswith(".onion")


def tor_socks() -> str:
    """The SOCKS endpoint string of the tor that reaches ``.onion`` hosts."""
    return os.environ.get(TOR_SOCKS_VARIABLE) or DEFAULT_TOR_SOCKS


def endpoint_for(reactor: Any, host: str, port: int, timeout: float) -> Any:
    """A TCP endpoint to ``host:port``; through Tor's SOCKS port for a ``.onion`` host."""
    if is_onion(host):
        socks = clientFromString(reactor, tor_socks())
        return TorClientEndpoint(host, port, socks_endpoint=socks, reactor=reactor)
    return HostnameEndpoint(reactor, host, port, timeout=timeout)


@implementer(IAgentEndpointFactory)
class AgentEndpoints:
    """``Agent.usingEndpointFactory``'s endpoints: ``endpoint_for``, TLS-wrapped for https."""

    def __init__(self, reactor: Any, policy: Any, timeout: float) -> None:
        self.reactor = reactor
        self.policy = policy
        self.timeout = timeout

    def endpointForURI(self, uri: Any) -> Any:
        endpoint = endpoint_for(self.reactor, uri.host.decode("ascii"), uri.port, self.timeout)
        if uri.scheme == b"https":
            return wrapClientTLS(self.policy.creatorForNetloc(uri.host, uri.port), endpoint)
        return endpoint
