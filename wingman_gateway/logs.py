"""Loggers for the gateway's own namespaces, filtered by ``--log-level``."""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timezone
from typing import IO, Any

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    Logger,
    formatEvent,
    globalLogPublisher,
    textFileLogObserver,
)
from twisted.python.logfile import LogFile
from zope.interface import implementer, provider

from wingman_gateway.redact import escape_event

ROOT_NAMESPACE = "wingman_gateway"

_levels = LogLevelFilterPredicate(defaultLogLevel=LogLevel.debug)
_levels.setLogLevelForNamespace(ROOT_NAMESPACE, LogLevel.info)
_filter = FilteringLogObserver(globalLogPublisher, [_levels])


def escaping(observer: ILogObserver) -> ILogObserver:
    """``observer``, given events whose client-supplied text is escaped (see ``redact``)."""

    def observe(event: dict[str, Any]) -> None:
        observer(escape_event(event))

    escaped: ILogObserver = provider(ILogObserver)(observe)
    return escaped


_observer = escaping(_filter)


def get_logger(namespace: str) -> Logger:
    """A Logger whose events are escaped and pass the gateway's level filter."""
    return Logger(namespace=namespace, observer=_observer)


def set_level(name: str) -> None:
    """Set the lowest level logged for every gateway namespace."""
    _levels.setLogLevelForNamespace(ROOT_NAMESPACE, LogLevel.levelWithName(name))


# -- observers for twistd's ``--logger`` ------------------------------------
# twistd calls a ``--logger`` factory with no arguments, so the file comes
# from the environment: ``WINGMAN_LOG_FILE`` (rotated at 10 MB, 5 kept), or
# standard output when it is unset.

LOG_FILE_ENV = "WINGMAN_LOG_FILE"
ROTATE_BYTES = 10 * 1000 * 1000
ROTATED_KEPT = 5


def _log_stream() -> IO[str]:
    path = os.environ.get(LOG_FILE_ENV)
    if not path:
        return sys.stdout
    rotated: IO[str] = LogFile.fromFullPath(path, rotateLength=ROTATE_BYTES, maxRotatedFiles=ROTATED_KEPT)
    return rotated


def text_observer() -> ILogObserver:
    """Human-readable lines (``--log-format text``)."""
    return escaping(textFileLogObserver(_log_stream()))


# Fields twisted.python.log's bridge adds to every event; they repeat what
# time/level/namespace/message already say.
_LEGACY_KEYS = frozenset({"format", "isError", "system", "why", "failure", "printed"})


def _namespace(event: dict[str, Any]) -> str:
    """The event's namespace; for old-style ``log.msg`` events, its system or ``twisted``."""
    namespace = str(event.get("log_namespace", "-"))
    if namespace == "log_legacy":
        system = event.get("system")
        return system if isinstance(system, str) and system != "-" else "twisted"
    return namespace


def json_observer() -> ILogObserver:
    """One JSON object per line (``--log-format json``), for log shippers."""
    stream = _log_stream()

    @implementer(ILogObserver)
    def observe(event: dict[str, Any]) -> None:
        record: dict[str, Any] = {
            "time": datetime.fromtimestamp(event.get("log_time", 0), timezone.utc).isoformat(),
            "level": getattr(event.get("log_level"), "name", "info"),
            "namespace": _namespace(event),
            "message": formatEvent(event),
        }
        for key, value in event.items():
            if not key.startswith(("log_", "_")) and key not in record and key not in _LEGACY_KEYS:
                record[key] = value
        failure = event.get("log_failure")
        if failure is not None:
            record["traceback"] = failure.getTraceback()
        stream.write(json.dumps(record, default=repr) + "\n")
        stream.flush()

    return escaping(observe)
