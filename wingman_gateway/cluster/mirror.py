"""This gateway's picture of the other gateways: who they are and their nodes.

A node on another gateway is kept as a ``Node`` whose connection is a
``RemoteConnection``: the rooms, the join ack's ``members`` and ``/stats``
treat it like any member, while messages for it go to its gateway.
"""

from __future__ import annotations

from typing import Any

import attrs
from zope.interface import implementer

from wingman_gateway.connection import IConnection, Outbound
from wingman_gateway.state import Node


@attrs.define(eq=False)
class Peer:
    """Another gateway of the cluster."""

    id: str
    name: str = ""
    # The last change of its state applied here (its events are numbered).
    applied: int = 0
    nodes: set[str] = attrs.Factory(set)
    # Its registry entry as last read (name, urls, nodes...).
    entry: dict[str, Any] = attrs.Factory(dict)
    # Its full state must be read again (a gap in its numbering, a restart).
    stale: bool = True


@implementer(IConnection)
class RemoteConnection:
    """The connection of a node that another gateway holds."""

    def __init__(self, peer: Peer, transport_name: str) -> None:
        self.gateway = peer
        self.transport_name = transport_name

    @property
    def peer(self) -> str:
        return f"gateway {self.gateway.name or self.gateway.id}"

    def send(self, message: Outbound) -> None:
        """Never used: messages for the node go to its gateway as one frame per gateway."""

    def close(self, status: int, reason: str) -> None:
        """Only the node's own gateway closes it."""


def peer_of(node: Node) -> Peer:
    """The gateway that holds ``node``, a node another gateway holds."""
    conn = node.conn
    if not isinstance(conn, RemoteConnection):
        raise TypeError(f"{node!r} is held by this gateway")
    return conn.gateway
