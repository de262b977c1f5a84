"""The protocol core's ``Runtime`` on the Twisted reactor: Deferreds, callLater."""

from __future__ import annotations

from typing import Any, Awaitable, Coroutine

from twisted.internet import defer
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from wingman_gateway.logs import get_logger


class TwistedRuntime:
    """Futures are Deferreds; tasks are ``ensureDeferred``; time is the reactor's."""

    cancelled: tuple[type[BaseException], ...] = (CancelledError,)

    def __init__(self, reactor: Any, namespace: str = "wingman_gateway.client") -> None:
        self.reactor = reactor
        self.log = get_logger(namespace)

    def future(self) -> Deferred[Any]:
        return Deferred()

    def resolve(self, future: Deferred[Any], value: Any) -> None:
        if not future.called:
            future.callback(value)

    def reject(self, future: Deferred[Any], error: BaseException) -> None:
        if not future.called:
            future.errback(error)

    def is_done(self, future: Deferred[Any]) -> bool:
        return bool(future.called)

    async def bounded(self, awaitable: Awaitable[Any], seconds: float) -> Any:
        waiting: Deferred[Any] = defer.ensureDeferred(awaitable)  # type: ignore[arg-type]  # takes any awaitable; hinted for coroutines
        waiting.addTimeout(seconds, self.reactor)
        try:
            return await waiting
        except defer.TimeoutError:
            raise TimeoutError(f"no result within {seconds:g} s") from None

    async def sleep(self, seconds: float) -> None:
        await deferLater(self.reactor, seconds, lambda: None)

    def spawn(self, coroutine: Coroutine[Any, Any, Any], what: str) -> Deferred[Any]:
        task = defer.ensureDeferred(coroutine)
        task.addErrback(self._unexpected, what)
        return task

    def now(self) -> float:
        return float(self.reactor.seconds())

    def _unexpected(self, failure: Failure, what: str) -> None:
        if not failure.check(CancelledError):
            self.log.failure(what, failure)
