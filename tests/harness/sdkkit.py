"""One behavioural suite, two Python clients: a ``Flavour`` runs a scenario on
the client's own event loop (Twisted's reactor, or asyncio) and makes its
clients, so the same test body drives ``GatewayClient`` and the asyncio ``Node``."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable, Coroutine, Sequence

from wingman_gateway.protocol import ClientError, Message, NodeCore

Scenario = Callable[[], Coroutine[Any, Any, Any]]


class Flavour:
    """A client library and the loop it runs on."""

    name = ""

    def __init__(self) -> None:
        self.made: list[NodeCore] = []

    def new(self, url: str | Sequence[str], name: str, **options: Any) -> NodeCore:
        raise NotImplementedError

    def client(self, url: str | Sequence[str], name: str, **options: Any) -> NodeCore:
        """A client (fast reconnects, short timeouts), closed when the scenario ends."""
        options.setdefault("request_timeout", 5.0)
        options.setdefault("min_backoff", 0.1)
        options.setdefault("max_backoff", 0.5)
        made = self.new(url, name, **options)
        self.made.append(made)
        return made

    def run(self, scenario: Scenario, timeout: float = 90.0) -> Any:
        """Run ``scenario`` to its end (bounded), then close every client it made.

        Tests are coroutines on pytest-twisted's reactor and await this: the
        Twisted flavour runs on that reactor, the asyncio one in ``asyncio.run``
        (which holds the reactor meanwhile; it needs nothing from it).
        """
        raise NotImplementedError

    async def _with_cleanup(self, scenario: Scenario) -> Any:
        try:
            return await scenario()
        finally:
            for made in self.made:
                await self.within(made.close(), 15)
            self.made.clear()

    async def sleep(self, seconds: float) -> None:
        raise NotImplementedError

    async def within(self, awaitable: Awaitable[Any], seconds: float = 10.0) -> Any:
        raise NotImplementedError

    async def until(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        """Poll ``predicate`` every 20 ms until it is true (bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {timeout} s")
            await self.sleep(0.02)


class TwistedFlavour(Flavour):
    name = "twisted"

    def new(self, url: str | Sequence[str], name: str, **options: Any) -> NodeCore:
        from wingman_gateway.client import GatewayClient

        return GatewayClient(url, name, **options)

    def run(self, scenario: Scenario, timeout: float = 90.0) -> Any:
        from twisted.internet import defer, reactor

        return defer.ensureDeferred(self._with_cleanup(scenario)).addTimeout(timeout, reactor)

    async def sleep(self, seconds: float) -> None:
        from twisted.internet import reactor
        from twisted.internet.task import deferLater

        await deferLater(reactor, seconds, lambda: None)

    async def within(self, awaitable: Awaitable[Any], seconds: float = 10.0) -> Any:
        from twisted.internet import defer, reactor

        return await defer.ensureDeferred(awaitable).addTimeout(seconds, reactor)  # type: ignore[arg-type]


class AsyncioFlavour(Flavour):
    name = "asyncio"

    def new(self, url: str | Sequence[str], name: str, **options: Any) -> NodeCore:
        from wingman_gateway.aio import Node

        return Node(url, name, **options)

    def run(self, scenario: Scenario, timeout: float = 90.0) -> Any:
        from twisted.internet import defer

        return defer.succeed(asyncio.run(asyncio.wait_for(self._with_cleanup(scenario), timeout)))

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def within(self, awaitable: Awaitable[Any], seconds: float = 10.0) -> Any:
        return await asyncio.wait_for(awaitable, seconds)


FLAVOURS = {flavour.name: flavour for flavour in (TwistedFlavour, AsyncioFlavour)}


async def refused(flavour: Flavour, awaitable: object) -> ClientError:
    """The ClientError ``awaitable`` raises (it must raise one)."""
    try:
        await flavour.within(awaitable)  # type: ignore[arg-type]
    except ClientError as error:
        return error
    raise AssertionError("no ClientError")


class Inbox:
    """Every Message a client delivers, taken out in order."""

    def __init__(self, flavour: Flavour, client: NodeCore) -> None:
        self.flavour = flavour
        self.messages: list[Message] = []
        client.add_listener(self.messages.append)

    async def next(
        self, kind: str | None = None, where: Callable[[Message], bool] | None = None, timeout: float = 5.0
    ) -> Message:
        def found() -> Message | None:
            for index, message in enumerate(self.messages):
                if (kind is None or message.type == kind) and (where is None or where(message)):
                    return self.messages.pop(index)
            return None

        return await self.flavour.until(found, timeout, kind or "message")

    def without(self, *kinds: str) -> list[Message]:
        return [message for message in self.messages if message.type not in kinds]


class States:
    """The state events a client emits, in order."""

    def __init__(self, flavour: Flavour, client: NodeCore) -> None:
        self.flavour = flavour
        self.events: list[tuple[str, dict[str, Any]]] = []
        client.on_state(lambda event, details: self.events.append((event, details)))

    @property
    def names(self) -> list[str]:
        return [event for event, _ in self.events]

    async def wait_for(self, event: str, timeout: float = 20.0) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            return next((details for name, details in self.events if name == event), None)

        return await self.flavour.until(found, timeout, repr(event))
