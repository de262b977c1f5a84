"""python-zeroconf on its own thread, driven from the reactor.

zeroconf runs an asyncio loop on a thread of its own (``use_asyncio=False``).
Work for it is submitted to that loop with ``run_coroutine_threadsafe`` and
its async API; results come back to the reactor with ``callFromThread``, so
the reactor never waits on zeroconf. Only opening and closing use a worker
thread: ``Zeroconf()`` waits for its loop thread to start and ``close()``
joins it, both blocking calls.
"""

from __future__ import annotations

import asyncio
import errno
import concurrent.futures
from typing import Any, Awaitable, Callable, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool

from zeroconf import InterfaceChoice, IPVersion, Zeroconf

from wingman_gateway.logs import get_logger

log = get_logger("wingman_gateway.discovery")

T = TypeVar("T")


class ZeroconfThread:
    """One Zeroconf instance and the way back to the reactor."""

    def __init__(self, reactor: Any, zeroconf: Zeroconf) -> None:
        self.reactor = reactor
        self.zeroconf = zeroconf
        self._closing: Deferred[None] | None = None

    @classmethod
    def open(cls, reactor: Any, addresses: list[str] | None = None) -> Deferred["ZeroconfThread"]:
        """Start zeroconf on ``addresses`` (IPv4 multicast), or on every interface."""
        interfaces: Any = list(addresses) if addresses else InterfaceChoice.All

        def start() -> Zeroconf:
            return Zeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only, use_asyncio=False)

        opened = deferToThreadPool(reactor, reactor.getThreadPool(), start)
        return opened.addCallback(lambda zeroconf: cls(reactor, zeroconf))

    def run(self, work: Callable[[Zeroconf], Awaitable[T]]) -> Deferred[T]:
        """Run ``work(zeroconf)`` on zeroconf's loop; its result, on the reactor."""

        async def body() -> T:
            return await work(self.zeroconf)

        assert self.zeroconf.loop is not None
        future = asyncio.run_coroutine_threadsafe(body(), self.zeroconf.loop)

        def cancel(_: Deferred[T]) -> None:
            future.cancel()

        result: Deferred[T] = Deferred(cancel)

        def finished(done: concurrent.futures.Future[T]) -> None:
            self.reactor.callFromThread(_deliver, result, done)

        future.add_done_callback(finished)
        return result

    def to_reactor(self, function: Callable[..., Any], *args: Any) -> None:
        """From zeroconf's thread: call ``function(*args)`` on the reactor."""
        self.reactor.callFromThread(function, *args)

    def close(self) -> Deferred[None]:
        """Stop zeroconf (its thread is joined in a worker thread)."""
        if self._closing is None:
            self._closing = deferToThreadPool(
                self.reactor, self.reactor.getThreadPool(), self.zeroconf.close
            )
            self._closing.addErrback(
                lambda failure: log.warn("mdns: closing zeroconf failed: {reason}",
                                         reason=failure.getErrorMessage())
            )
        return when_done(self._closing)


def when_done(source: Deferred[Any]) -> Deferred[None]:
    """A new Deferred that fires (None) once ``source`` has, leaving ``source``'s chain alone."""
    follower: Deferred[None] = Deferred()

    def fire(result: Any) -> Any:
        follower.callback(None)
        return result

    source.addBoth(fire)
    return follower


def describe_socket_error(error: BaseException) -> str:
    """Why zeroconf could not open its sockets, with what to do about a busy port."""
    if isinstance(error, OSError) and error.errno == errno.EADDRINUSE:
        return (f"UDP port 5353 is held by a program that does not share it "
                f"(another mDNS responder?): {error.strerror}")
    return str(error)


def _deliver(result: Deferred[T], done: concurrent.futures.Future[T]) -> None:
    if result.called:  # cancelled meanwhile
        return
    if done.cancelled():
        result.cancel()
        return
    error = done.exception()
    if error is not None:
        result.errback(error)
    else:
        result.callback(done.result())
