"""``GatewayClient``: the protocol core (``wingman_gateway.protocol``) on Twisted.

Requests, replies, the heartbeat answer, reconnecting and rejoining live
once, in ``NodeCore``; this driver supplies the reactor and the transports
(``IClientTransport``), which only move text.
"""

from __future__ import annotations

from typing import Any, Sequence

from zope.interface import implementer

from wingman_gateway.client.runtime import TwistedRuntime
from wingman_gateway.client.choose import transport_for
from wingman_gateway.client.probe import Trust, rank_by_load
from wingman_gateway.client.transport import TRANSPORTS, IClientTransport, ITransportReceiver
from wingman_gateway.protocol.node import Link, NodeCore
from wingman_gateway.protocol.tor import tor_socks as tor_socks_endpoint


# How long choosing among several gateways waits for their /health.
PROBE_TIMEOUT = 2.0


@implementer(ITransportReceiver)
class _Link(Link):
    """One transport's reports, passed on only while it is the client's current one."""


class GatewayClient(NodeCore):
    """A node's connection to a Wingman Gateway: rooms, messages, presence.

    Awaitable methods run on the Twisted reactor (``ensureDeferred``). After
    a lost connection the client reconnects (unless ``reconnect=False`` or
    ``close()`` was called), registers again and rejoins its rooms.
    ``transport`` is ``"websocket"``, ``"http"`` (the HTTP bridge) or
    ``"auto"`` (WebSocket, else HTTP); by default ``auto`` for a ws(s)://
    URL and ``http`` for an http(s):// one.
    ``url`` may be a list: gateways of one cluster. Each (re)connection asks
    their ``/health`` and takes the least loaded one that registers the node.
    ``tor_socks`` is Tor's SOCKS port (a client endpoint string) for
    ``.onion`` URLs: by default ``$WINGMAN_TOR_SOCKS``, else ``tcp:127.0.0.1:9050``.
    """

    link_class = _Link

    def __init__(
        self,
        url: str | Sequence[str],
        name: str,
        *,
        token: str | None = None,
        capabilities: Sequence[str] = (),
        agent_name: str | None = None,
        metadata: dict[str, Any] | None = None,
        ca_file: str | None = None,
        reconnect: bool = True,
        min_backoff: float = 0.5,
        max_backoff: float = 30.0,
        request_timeout: float = 10.0,
        reactor: Any = None,
        transport: str | None = None,
        tor_socks: str | None = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        if transport is not None and transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, not {transport!r}")
        super().__init__(
            TwistedRuntime(reactor), url, name, token=token, capabilities=capabilities,
            agent_name=agent_name, metadata=metadata, ca_file=ca_file, reconnect=reconnect,
            min_backoff=min_backoff, max_backoff=max_backoff, request_timeout=request_timeout,
            transport=transport,
        )
        self._reactor = reactor
        self.tor_socks = tor_socks_endpoint(tor_socks)

    async def candidates(self) -> list[str]:
        return await rank_by_load(
            self._reactor, self.urls, min(self.request_timeout, PROBE_TIMEOUT), Trust(ca_file=self.ca_file),
            self.tor_socks,
        )

    def new_transport(self, link: Link) -> IClientTransport:
        # Link has the receiver's methods; the protocol core declares no zope interface.
        return transport_for(
            self.url, link,  # type: ignore[arg-type]  # a receiver by its methods, not by a zope declaration
            reactor=self._reactor, ca_file=self.ca_file, timeout=self.request_timeout, kind=self.transport,
            tor_socks=self.tor_socks,
        )
