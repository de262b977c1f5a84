"""Finding gateways announced on the LAN (``wingman gateway discover``, ``join --auto-discover``).

A zeroconf browser for ``_wingman-gateway._tcp.local.`` runs on zeroconf's
thread; each instance it sees is resolved there and handed to the reactor
as a ``FoundGateway``. Instances that say goodbye are dropped. Announcements
a client cannot use (wrong ``txtvers``, unknown transport, no address) are
set aside with the reason, never fatal.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from twisted.internet.defer import Deferred
from zeroconf import DNSQuestionType, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo

from wingman_gateway.discovery.records import (
    SERVICE_TYPE,
    BadAnnouncement,
    FoundGateway,
    from_announcement,
)
from wingman_gateway.discovery.zc import ZeroconfThread, describe_socket_error

RESOLVE_TIMEOUT_MS = 3000
# A flood of announcements cannot grow a browse without bound.
MAX_INSTANCES = 256


class MdnsBrowser:
    """Collects the gateways announced until ``timeout`` seconds (or the first one)."""

    def __init__(self, reactor: Any, timeout: float, first: bool = False,
                 progress: Callable[[str], None] | None = None) -> None:
        self.reactor = reactor
        self.progress = progress or (lambda text: None)
        self.timeout = timeout
        self.first = first
        self.found: dict[str, FoundGateway] = {}
        self.ignored: dict[str, str] = {}
        self.withdrawn: list[str] = []
        self._seen: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()  # kept so they are not collected early
        self._done: Deferred[None] = Deferred()

    async def browse(self) -> list[FoundGateway]:
        """Browse, then return what is announced at the end, sorted by name."""
        zeroconf = await ZeroconfThread.open(self.reactor)
        try:
            browser = await zeroconf.run(lambda z: self._start(z, zeroconf))
            timer = self.reactor.callLater(self.timeout, self._finish)
            await self._done
            if timer.active():
                timer.cancel()
            await zeroconf.run(lambda z: self._stop(browser))
        finally:
            await zeroconf.close()
        return sorted(self.found.values(), key=lambda g: (g.name.lower(), g.name))

    # -- on zeroconf's thread ---------------------------------------------

    async def _start(self, zc: Zeroconf, bridge: ZeroconfThread) -> AsyncServiceBrowser:
        def changed(zeroconf: Zeroconf, service_type: str, name: str, state_change: Any) -> None:
            if state_change is ServiceStateChange.Removed:
                self._seen.discard(name)
                bridge.to_reactor(self._removed, name)
                return
            if name in self._seen and state_change is ServiceStateChange.Added:
                return
            if len(self._seen) >= MAX_INSTANCES and name not in self._seen:
                return
            self._seen.add(name)
            task = asyncio.ensure_future(self._resolve(zeroconf, bridge, name))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        return AsyncServiceBrowser(zc, SERVICE_TYPE, handlers=[changed])

    async def _stop(self, browser: AsyncServiceBrowser) -> None:
        await browser.async_cancel()
        for task in list(self._tasks):
            task.cancel()

    async def _resolve(self, zc: Zeroconf, bridge: ZeroconfThread, name: str) -> None:
        instance = _instance(name)
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        # QM: answers are multicast, so they reach this browser even when other
        # responders on this host share UDP port 5353 (a unicast answer reaches one).
        if not await info.async_request(zc, RESOLVE_TIMEOUT_MS, question_type=DNSQuestionType.QM):
            bridge.to_reactor(self._ignore, instance, "did not resolve")
            return
        try:
            found = from_announcement(
                instance, info.port, info.server, info.parsed_addresses(), info.properties
            )
        except (BadAnnouncement, ValueError) as error:
            bridge.to_reactor(self._ignore, instance, str(error))
            return
        bridge.to_reactor(self._found, found)

    # -- on the reactor ---------------------------------------------------

    def _found(self, gateway: FoundGateway) -> None:
        if self._done.called:
            return
        if gateway.name not in self.found:
            self.progress(f"found {gateway.name!r} at {', '.join(gateway.urls)}")
        self.found[gateway.name] = gateway
        self.ignored.pop(gateway.name, None)
        if self.first:
            self._finish()

    def _ignore(self, instance: str, reason: str) -> None:
        if not self._done.called and instance not in self.found:
            self.ignored[instance] = reason

    def _removed(self, name: str) -> None:
        if self.found.pop(_instance(name), None) is not None:
            self.withdrawn.append(_instance(name))
            self.progress(f"{_instance(name)!r} said goodbye")

    def _finish(self) -> None:
        if not self._done.called:
            self._done.callback(None)


def _instance(name: str) -> str:
    suffix = "." + SERVICE_TYPE
    return name[: -len(suffix)] if name.endswith(suffix) else name


async def browse_mdns(
    reactor: Any, timeout: float, first: bool = False, progress: Callable[[str], None] | None = None
) -> tuple[list[FoundGateway], list[str]]:
    """The gateways announced within ``timeout`` seconds, and notes on what was set aside.

    ``progress`` hears of each gateway as it is found or says goodbye.
    """
    browser = MdnsBrowser(reactor, timeout, first, progress)
    try:
        found = await browser.browse()
    except OSError as error:
        raise OSError(error.errno, describe_socket_error(error)) from None
    notes = [f"ignored announcement {name!r}: {why}" for name, why in browser.ignored.items()]
    notes += [f"{name!r} said goodbye (it stopped) while browsing" for name in browser.withdrawn]
    return found, notes
