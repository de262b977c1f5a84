"""The asyncio client: ``NodeCore`` on asyncio, with ``websockets`` and ``httpx``."""

from __future__ import annotations

from typing import Any, Generator, Sequence

from wingman_gateway.aio.runtime import AsyncioRuntime
from wingman_gateway.protocol.node import Link, NodeCore
from wingman_gateway.protocol.runtime import Transport
from wingman_gateway.protocol.tor import tor_socks as tor_socks_endpoint
from wingman_gateway.protocol.urls import TRANSPORTS, as_http_url, as_websocket_url, transport_kind

# How long choosing among several gateways waits for their /health.
PROBE_TIMEOUT = 2.0


class Node(NodeCore):
    """A node on a Wingman Gateway, for asyncio programs.

    ``await node.join(room)``, ``await node.broadcast(room, payload)``,
    ``await node.direct(node_id, payload)``, ``async for message in node``.
    Reconnects and rejoins by itself; see ``connect``.
    """

    def __init__(
        self, url: str | Sequence[str], name: str, *, transport: str | None = None, tor_socks: str | None = None,
        **options: Any,
    ) -> None:
        if transport is not None and transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, not {transport!r}")
        super().__init__(AsyncioRuntime(), url, name, transport=transport, **options)
        self.tor_socks = tor_socks_endpoint(tor_socks)

    async def candidates(self) -> list[str]:
        from wingman_gateway.aio.probe import rank_by_load

        return await rank_by_load(
            self.urls, timeout=min(self.request_timeout, PROBE_TIMEOUT), ca_file=self.ca_file, socks=self.tor_socks,
        )

    def new_transport(self, link: Link) -> Transport:
        kind = transport_kind(self.url, self.transport)
        options: dict[str, Any] = {"ca_file": self.ca_file, "timeout": self.request_timeout, "tor_socks": self.tor_socks}
        if kind == "websocket":
            from wingman_gateway.aio.websocket import WebSocketTransport

            return WebSocketTransport(as_websocket_url(self.url), link, **options)
        if kind == "http":
            from wingman_gateway.aio.http import HttpTransport

            return HttpTransport(as_http_url(self.url), link, **options)
        from wingman_gateway.aio.auto import AutoTransport

        as_http_url(self.url)  # refuses a scheme neither transport speaks
        return AutoTransport(self.url, link, **options)

    async def __aenter__(self) -> "Node":
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class Connecting:
    """``connect(...)``: awaited, a connected ``Node``; or ``async with`` it (closed on exit)."""

    def __init__(self, node: Node, rooms: Sequence[str]) -> None:
        self.node = node
        self.rooms = list(rooms)

    async def _open(self) -> Node:
        try:
            await self.node.connect()
            for room in self.rooms:
                await self.node.join(room)
        except BaseException:
            await self.node.close()
            raise
        return self.node

    def __await__(self) -> Generator[Any, None, Node]:
        return self._open().__await__()

    async def __aenter__(self) -> Node:
        return await self._open()

    async def __aexit__(self, *exc: object) -> None:
        await self.node.close()


def connect(
    url: str | Sequence[str],
    *,
    name: str,
    token: str | None = None,
    rooms: Sequence[str] = (),
    capabilities: Sequence[str] = (),
    agent_name: str | None = None,
    metadata: dict[str, Any] | None = None,
    ca_file: str | None = None,
    transport: str | None = None,
    reconnect: bool = True,
    min_backoff: float = 0.5,
    max_backoff: float = 30.0,
    request_timeout: float = 10.0,
    tor_socks: str | None = None,
) -> Connecting:
    """Connect to the gateway at ``url``, register as ``name`` and join ``rooms``.

    ::

        async with connect("ws://127.0.0.1:3000/ws", name="echo", rooms=["alpha"]) as node:
            async for message in node:
                ...

    ``url`` may be a list: gateways of one cluster. Each (re)connection asks
    their ``/health`` and takes the least loaded one that registers the node;
    when that gateway goes, the node reconnects to another and rejoins.

    ``transport``: ``"websocket"``, ``"http"`` (the HTTP bridge) or
    ``"auto"`` (WebSocket, else HTTP); by default ``auto`` for a ws(s)://
    URL and ``http`` for an http(s):// one.
    ``tor_socks``: Tor's SOCKS port (``tcp:HOST:PORT``) for ``.onion`` URLs,
    which are never resolved locally; by default ``$WINGMAN_TOR_SOCKS``,
    else ``tcp:127.0.0.1:9050``.
    ``wss://`` and ``https://`` verify the certificate chain (system store,
    or the PEM bundle ``ca_file``) and the host name.
    """
    node = Node(
        url, name, token=token, capabilities=capabilities, agent_name=agent_name, metadata=metadata,
        ca_file=ca_file, transport=transport, reconnect=reconnect, min_backoff=min_backoff,
        max_backoff=max_backoff, request_timeout=request_timeout, tor_socks=tor_socks,
    )
    return Connecting(node, rooms)
