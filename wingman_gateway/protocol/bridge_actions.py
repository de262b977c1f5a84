"""What ``BridgeCore`` asks its driver to do: requests to make, texts to
deliver, timers, and the end; each action knows which driver call it is."""

from __future__ import annotations

from typing import Iterator, Protocol

import attrs

from wingman_gateway.protocol.errors import ClientError

# What a request is for.
PROBE = "probe"  # the ping that opens the connection
SEND = "send"  # one envelope from the outbox
STREAM = "stream"  # the event stream (its body is read with ``Read``)
POLL = "poll"  # one long poll
CONFIRM = "confirm"  # confirming streamed messages
FAREWELL = "farewell"  # the unregister when closing; it outlives the connection

# The timers the core asks for, by name (a new one replaces its namesake).
READ = "read"  # re-open a broken reader
SILENT = "silent"  # an event stream without first bytes
CONFIRMING = "confirm"  # send a batched confirmation


class Driver(Protocol):
    """What performs the core's actions: HTTP requests, timers, the node."""

    def request(self, request: "Request") -> None: ...
    def deliver(self, text: str) -> None: ...
    def later(self, timer: str, delay: float) -> None: ...
    def cancel(self, timer: str) -> None: ...
    def read(self, request: "Request") -> None: ...
    def stop(self, request: "Request") -> None: ...
    def opened(self) -> None: ...
    def open_failed(self, error: ClientError) -> None: ...
    def lost(self, lost: "Lost") -> None: ...


@attrs.define(eq=False)
class Request:
    """One HTTP request to make; the driver reports its outcome with it."""

    kind: str
    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None
    timeout: float
    after: int = 0  # what a confirmation confirms

    def apply(self, driver: Driver) -> None:
        driver.request(self)


@attrs.frozen
class Deliver:
    """Hand ``text`` (one envelope) to the node."""

    text: str

    def apply(self, driver: Driver) -> None:
        driver.deliver(self.text)


@attrs.frozen
class Later:
    """Call ``fire(timer)`` after ``delay`` seconds."""

    timer: str
    delay: float

    def apply(self, driver: Driver) -> None:
        driver.later(self.timer, self.delay)


@attrs.frozen
class Cancel:
    """The timer is no longer wanted."""

    timer: str

    def apply(self, driver: Driver) -> None:
        driver.cancel(self.timer)


@attrs.frozen
class Read:
    """Pass this stream's body on as it comes (``received``, then ``ended``)."""

    request: Request

    def apply(self, driver: Driver) -> None:
        driver.read(self.request)


@attrs.frozen
class Stop:
    """Abandon this request (or stop reading its body); nothing more is wanted of it."""

    request: Request

    def apply(self, driver: Driver) -> None:
        driver.stop(self.request)


@attrs.frozen
class Opened:
    """The probe was answered: texts may be sent."""

    def apply(self, driver: Driver) -> None:
        driver.opened()


@attrs.frozen
class OpenFailed:
    """The bridge cannot be used: opening fails with ``error``."""

    error: ClientError

    def apply(self, driver: Driver) -> None:
        driver.open_failed(self.error)


@attrs.frozen
class Lost:
    """The session is over: stop every timer and request but the ``farewell``.

    ``notify``: the connection had opened, so the node is told (``code``,
    ``reason``). ``farewell``: the unregister to post after all, if any.
    """

    code: int | None
    reason: str
    notify: bool
    farewell: Request | None

    def apply(self, driver: Driver) -> None:
        driver.lost(self)


Action = Request | Deliver | Later | Cancel | Read | Stop | Opened | OpenFailed | Lost


def perform(actions: Iterator[Action], driver: Driver) -> None:
    """Carry out ``actions`` one after another."""
    for action in actions:
        action.apply(driver)
