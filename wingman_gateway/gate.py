"""The door of every listener: connections are counted and capped at accept.

``GatedFactory`` wraps a listener's factory (a Site, the SSH factory); a
connection over a cap is closed before any byte is read from it (the
factory returns no protocol). The wrapper stays between the socket and the
protocol for the connection's life, so the count drops whenever it closes,
whatever protocol took the connection over (a WebSocket takes over an HTTP
channel).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IAddress, IProtocolNegotiationFactory
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from zope.interface import alsoProvides

from wingman_gateway.admission import REFUSE, RESERVED, Admission, counted_source


class GatedConnection(ProtocolWrapper):
    """One admitted connection; ``reserved`` ones may only ask for what the reserve is for."""

    source: str | None = None
    reserved = False
    # zope's adaptation (``IPushProducer(transport)``, which twisted.web's
    # channel makes of every connection) asks for ``__conform__``, which
    # ProtocolWrapper would look up below and fail on with an exception each
    # time: 5% of the gateway's time while nodes connect (py-spy). No wrapped
    # transport has one, so the answer is the same.
    __conform__ = None

    factory: "GatedFactory"

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.factory.admission.connection_closed(self.source)
        super().connectionLost(reason)


class GatedFactory(WrappingFactory[GatedConnection]):
    """Wraps ``factory``; asks ``admission`` about every connection it accepts."""

    protocol = GatedConnection
    noisy = False

    def __init__(self, factory: Any, admission: Admission) -> None:
        super().__init__(factory)
        self.admission = admission
        if IProtocolNegotiationFactory.providedBy(factory):
            # TLS asks the factory it wraps which protocols to offer (ALPN).
            alsoProvides(self, IProtocolNegotiationFactory)

    def acceptableProtocols(self) -> list[bytes]:
        protocols: list[bytes] = self.wrappedFactory.acceptableProtocols()
        return protocols

    def buildProtocol(self, addr: IAddress | None) -> GatedConnection | None:  # type: ignore[override]  # None refuses, as IProtocolFactory allows
        source = counted_source(getattr(addr, "host", None))
        verdict = self.admission.connection_opened(source)
        if verdict == REFUSE:
            return None
        wrapped = self.wrappedFactory.buildProtocol(addr)
        if wrapped is None:
            self.admission.connection_closed(source)
            return None
        connection = GatedConnection(self, wrapped)
        connection.source = source
        connection.reserved = verdict == RESERVED
        return connection

    def registerProtocol(self, p: Any) -> None:
        """Connections are counted by ``admission``, not kept in a dict."""

    def unregisterProtocol(self, p: Any) -> None:
        pass


def gate_of(transport: Any) -> GatedConnection | None:
    """The ``GatedConnection`` under a protocol's transport (through TLS), or None."""
    for _ in range(4):
        if transport is None:
            return None
        if isinstance(transport, GatedConnection):
            return transport
        transport = getattr(transport, "transport", None)
    return None
