"""An in-memory ``IConnection`` for driving the Router without sockets."""

from __future__ import annotations

import json
from typing import Any, Callable

from twisted.internet.task import Clock
from zope.interface import implementer

from wingman_gateway.auth import Authenticator
from wingman_gateway.connection import IConnection, Outbound
from wingman_gateway.history import HistorySettings, MemoryHistory
from wingman_gateway.limits import Limits
from wingman_gateway.rooms import IRooms, LocalRooms
from wingman_gateway.router import Router
from wingman_gateway.state import Node


@implementer(IConnection)
class MemoryConnection:
    """Records what the Router sends; raw bytes kept for byte-exact checks."""

    transport_name = "memory"

    def __init__(self, peer: str = "memory:1") -> None:
        self.peer = peer
        self.raw: list[bytes] = []
        self.closed: tuple[int, str] | None = None

    def send(self, message: Outbound) -> None:
        self.raw.append(message.data)

    @property
    def sent(self) -> list[dict[str, Any]]:
        return [json.loads(data) for data in self.raw]

    def take(self) -> list[dict[str, Any]]:
        """Everything sent since the last take."""
        messages = self.sent
        self.raw.clear()
        return messages

    def close(self, status: int, reason: str) -> None:
        self.closed = (status, reason)


class Harness:
    """A Router on a Clock, with helpers to connect and drive test nodes."""

    def __init__(
        self,
        limits: Limits | None = None,
        authenticator: Authenticator | None = None,
        history: HistorySettings | None = None,
        rooms: Callable[[Clock], IRooms] | None = None,
    ):
        """``history``: room history as configured (none without it); ``rooms``
        makes another rooms implementation on the harness's clock."""
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        if rooms is None:
            made: IRooms = LocalRooms(self.clock, MemoryHistory(self.clock, history or HistorySettings(size=0)))
        else:
            made = rooms(self.clock)
        self.router = Router(self.clock, limits or Limits(), authenticator, "test-gateway", made)

    def connect(self) -> tuple[Node, MemoryConnection]:
        conn = MemoryConnection(f"memory:{len(self.router.connections) + 1}")
        return self.router.connect(conn), conn

    def send(self, session: Node, envelope: dict[str, Any] | str | bytes) -> None:
        data = envelope if isinstance(envelope, (str, bytes)) else json.dumps(envelope)
        self.router.receive(session, data)
        self.clock.advance(0)  # the end of the reactor turn: presence goes out

    def request(
        self, session: Node, conn: MemoryConnection, kind: str, payload: Any = None, **extra: Any
    ) -> dict[str, Any]:
        """Send one request and return the single reply it caused."""
        envelope: dict[str, Any] = {"type": kind, **extra}
        if payload is not None:
            envelope["payload"] = payload
        conn.take()
        self.send(session, envelope)
        replies = conn.take()
        assert len(replies) == 1, replies
        return replies[0]

    def node(self, name: str, *rooms: str) -> tuple[Node, MemoryConnection]:
        """A registered node that has joined ``rooms`` (created as needed)."""
        session, conn = self.connect()
        reply = self.request(session, conn, "register", {"name": name})
        assert reply["type"] == "ack", reply
        for room in rooms:
            reply = self.request(
                session, conn, "join_group", {"groupName": room, "createIfNotExists": True}
            )
            assert reply["type"] == "ack", reply
        conn.take()
        return session, conn
