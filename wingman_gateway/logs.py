"""Loggers for the gateway's own namespaces, filtered by ``--log-level``."""

from __future__ import annotations

from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    Logger,
    globalLogPublisher,
)

ROOT_NAMESPACE = "wingman_gateway"

_levels = LogLevelFilterPredicate(defaultLogLevel=LogLevel.debug)
_levels.setLogLevelForNamespace(ROOT_NAMESPACE, LogLevel.info)
_observer = FilteringLogObserver(globalLogPublisher, [_levels])


def get_logger(namespace: str) -> Logger:
    """A Logger whose events pass the gateway's level filter."""
    return Logger(namespace=namespace, observer=_observer)


def set_level(name: str) -> None:
    """Set the lowest level logged for every gateway namespace."""
    _levels.setLogLevelForNamespace(ROOT_NAMESPACE, LogLevel.levelWithName(name))
