"""Running a command's coroutine on the reactor and returning its exit status."""

from __future__ import annotations

import sys
from typing import Any, Awaitable, Callable

from twisted.internet.defer import ensureDeferred
from twisted.internet.task import react
from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    PredicateResult,
    eventAsText,
    globalLogBeginner,
)


def _critical_to_stderr() -> None:
    """What Twisted shows before logging begins (critical events on stderr, as text),
    less the certificate-check failures a refused TLS handshake logs with a
    traceback: the commands report those in their own words."""

    def not_tls_verification(event: dict[str, Any]) -> PredicateResult:
        quiet = event.get("log_namespace") == "twisted.internet._sslverify"
        result: PredicateResult = PredicateResult.no if quiet else PredicateResult.maybe
        return result

    def text(event: dict[str, Any]) -> str:
        return (eventAsText(event, includeTimestamp=False, includeSystem=False) or "") + "\n"

    observer = FilteringLogObserver(
        FileLogObserver(sys.stderr, text),
        # A plain function serves as a predicate: Twisted calls it with the event.
        [not_tls_verification, LogLevelFilterPredicate(defaultLogLevel=LogLevel.critical)],  # type: ignore[list-item]  # a function predicate
    )
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)


def run_async(command: Callable[..., Awaitable[int]], *args: Any) -> int:
    """Run ``command(reactor, *args)`` under ``react``; exit with its status."""
    _critical_to_stderr()

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
