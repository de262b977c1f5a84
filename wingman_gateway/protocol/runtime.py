"""The seams between the protocol core and an event loop or a wire.

A driver (Twisted, asyncio) implements ``Runtime`` once, and a transport
per wire; the core awaits only what these hand it, so the same coroutines
run under ``ensureDeferred`` and under an asyncio task.
"""

from __future__ import annotations

from typing import Any, Awaitable, Coroutine, Protocol

CLOSE_NORMAL = 1000


class Log(Protocol):
    """Structured log calls: a format with ``{field}`` names, and the fields."""

    def debug(self, format: Any = None, **fields: Any) -> None: ...
    def info(self, format: Any = None, **fields: Any) -> None: ...
    def warn(self, format: Any = None, **fields: Any) -> None: ...
    def error(self, format: Any = None, **fields: Any) -> None: ...
    def failure(self, format: Any, failure: Any = None, **fields: Any) -> None: ...


class Task(Protocol):
    """A running coroutine that can be stopped."""

    def cancel(self) -> Any: ...


class Runtime(Protocol):
    """What the core needs from an event loop."""

    @property
    def cancelled(self) -> tuple[type[BaseException], ...]:
        """Exceptions that mean "cancelled" on this loop."""

    @property
    def log(self) -> Log: ...

    def future(self) -> Any:
        """A fresh awaitable that ``resolve`` or ``reject`` completes once."""

    def resolve(self, future: Any, value: Any) -> None:
        """Complete ``future`` with ``value`` (nothing if already done)."""

    def reject(self, future: Any, error: BaseException) -> None:
        """Fail ``future`` with ``error`` (nothing if already done)."""

    def is_done(self, future: Any) -> bool:
        """Whether ``future`` is completed (or cancelled)."""

    async def bounded(self, awaitable: Awaitable[Any], seconds: float) -> Any:
        """Await for at most ``seconds``, cancelling it and raising ``TimeoutError`` after."""

    async def sleep(self, seconds: float) -> None:
        """Wait without blocking the loop."""

    def spawn(self, coroutine: Coroutine[Any, Any, Any], what: str) -> Task:
        """Run ``coroutine`` on its own; a failure is logged as ``what``."""

    def now(self) -> float:
        """The loop's clock, in seconds."""


class Receiver(Protocol):
    """What a transport reports to, once it is open."""

    def text_received(self, text: str) -> None: ...
    def connection_lost(self, code: int | None, reason: str) -> None: ...


class Transport(Protocol):
    """One connection to a gateway, used once: opened, used, closed."""

    url: str

    def open(self) -> Awaitable[None]:
        """Connect; fails with ``ClientError`` (``CONNECTION_FAILED``, ``TLS_ERROR``)."""

    def send_text(self, text: str) -> None:
        """Queue one envelope for the gateway; never blocks."""

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Close (politely where the wire allows); loss is then reported."""
