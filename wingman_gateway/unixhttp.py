"""HTTP over a Unix socket with Twisted's Agent (tailscaled's LocalAPI, a gateway's ``unix:`` listener)."""

from __future__ import annotations

from typing import Any

from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer


@implementer(IAgentEndpointFactory)
class UnixSocket:
    """Every request goes to one Unix socket, whatever the URL's host
    (``Agent.usingEndpointFactory(reactor, UnixSocket(...))``)."""

    def __init__(self, reactor: Any, path: str, timeout: float) -> None:
        self.reactor, self.path, self.timeout = reactor, path, timeout

    def endpointForURI(self, uri: Any) -> UNIXClientEndpoint:
        return UNIXClientEndpoint(self.reactor, self.path, timeout=self.timeout)
