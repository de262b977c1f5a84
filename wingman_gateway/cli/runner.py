"""Running a command's coroutine on the reactor and returning its exit status."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from twisted.internet.defer import ensureDeferred
from twisted.internet.task import react


def run_async(command: Callable[..., Awaitable[int]], *args: Any) -> int:
    """Run ``command(reactor, *args)`` under ``react``; exit with its status."""

    async def main(reactor: Any) -> None:
        status = await command(reactor, *args)
        if status:
            raise SystemExit(status)

    react(lambda reactor: ensureDeferred(main(reactor)))
    return 0  # react exits the process; this line is not reached


async def pause(reactor: Any, seconds: float) -> None:
    """Wait on the reactor (never block it)."""
    from twisted.internet.task import deferLater

    await deferLater(reactor, seconds, lambda: None)
