"""Helpers for the client library's tests: bounded waits on the running reactor."""

from __future__ import annotations

import os
import signal
from typing import Any, Awaitable, Callable

from twisted.internet import defer, reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from harness.support import GatewayProcess
from wingman_gateway.client import GatewayClient, Message


async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)


async def within(awaitable: Awaitable[Any], seconds: float = 10.0) -> Any:
    """Await ``awaitable`` for at most ``seconds`` (defer.TimeoutError after)."""
    return await defer.ensureDeferred(awaitable).addTimeout(seconds, reactor)


class _Arrivals:
    """Wakes one waiter whenever something is appended."""

    def __init__(self) -> None:
        self._arrival: Deferred[None] | None = None

    def notify(self) -> None:
        arrival, self._arrival = self._arrival, None
        if arrival is not None and not arrival.called:
            arrival.callback(None)

    async def wait(self, seconds: float) -> None:
        self._arrival = Deferred()
        try:
            await self._arrival.addTimeout(seconds, reactor)
        except defer.TimeoutError:
            pass


class Inbox(_Arrivals):
    """Every Message a client delivers to its listeners, taken out in order."""

    def __init__(self, client: GatewayClient) -> None:
        super().__init__()
        self.messages: list[Message] = []
        self.remove = client.add_listener(self._got)

    def _got(self, message: Message) -> None:
        self.messages.append(message)
        self.notify()

    async def next(
        self, kind: str | None = None, where: Callable[[Message], bool] | None = None, timeout: float = 5.0
    ) -> Message:
        """The first waiting message of ``kind`` matching ``where`` (bounded)."""
        deadline = reactor.seconds() + timeout
        while True:
            for index, message in enumerate(self.messages):
                if (kind is None or message.type == kind) and (where is None or where(message)):
                    del self.messages[index]
                    return message
            left = deadline - reactor.seconds()
            if left <= 0:
                raise AssertionError(f"no {kind or 'message'} within {timeout} s; have {self.messages}")
            await self.wait(left)

    def without(self, *kinds: str) -> list[Message]:
        return [message for message in self.messages if message.type not in kinds]


class StateLog(_Arrivals):
    """The state events a client emits, in order."""

    def __init__(self, client: GatewayClient) -> None:
        super().__init__()
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.remove = client.on_state(self._got)

    def _got(self, event: str, details: dict[str, Any]) -> None:
        self.events.append((event, details))
        self.notify()

    @property
    def names(self) -> list[str]:
        return [event for event, _ in self.events]

    async def wait_for(self, event: str, timeout: float = 15.0) -> dict[str, Any]:
        """Details of the first ``event`` emitted (bounded)."""
        deadline = reactor.seconds() + timeout
        while True:
            for name, details in self.events:
                if name == event:
                    return details
            left = deadline - reactor.seconds()
            if left <= 0:
                raise AssertionError(f"no {event!r} within {timeout} s; events: {self.names}")
            await self.wait(left)


async def stop_gateway(gateway: GatewayProcess, timeout: float = 10.0) -> int:
    """SIGTERM our gateway by pid and wait for it without blocking the reactor."""
    proc = gateway.proc
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
    deadline = reactor.seconds() + timeout
    while proc.poll() is None and reactor.seconds() < deadline:
        await sleep(0.05)
    return gateway.stop()


# The test PKI lives in support.py.
from harness.support import LOCAL_NAMES, WRONG_NAMES, Pki, make_pki  # noqa: E402,F401

