"""Setting values and their checks: a leaf module every settings table imports.

Each checker takes the setting's name (a config key or ``--flag``) and a
value, and returns the value in its checked type or raises ``ConfigError``
naming the setting.
"""

from __future__ import annotations

import re
from typing import Any, Callable

LOG_LEVELS = ("debug", "info", "warn", "error", "critical")


class ConfigError(ValueError):
    """A setting has a bad value; the message names it."""


_HOST_NAME = re.compile(r"(?i)^(?=.{1,253}\.?$)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?"
                        r"(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?)*\.?$")


def host_names(key: str, value: Any) -> tuple[str, ...]:
    """A list of DNS host names (a single string is taken as a list of one), lower case."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{key}: expected a list of host names, got {value!r}")
    for name in value:
        if not isinstance(name, str) or not _HOST_NAME.match(name):
            raise ConfigError(f"{key}: expected a host name such as gateway.example, got {name!r}")
    return tuple(name.lower().rstrip(".") for name in value)


def integer(minimum: int) -> Callable[[str, Any], int]:
    def check(key: str, value: Any) -> int:
        if isinstance(value, str):
            try:
                value = int(value)
            except ValueError:
                raise ConfigError(f"{key}: expected a whole number, got {value!r}")
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected a whole number, got {value!r}")
        if value < minimum:
            raise ConfigError(f"{key}: must be at least {minimum}, got {value}")
        return value

    return check


def port(key: str, value: Any) -> int:
    port = integer(0)(key, value)
    if port > 65535:
        raise ConfigError(f"{key}: must be a TCP port (0-65535), got {port}")
    return port


def text(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}: expected a non-empty string, got {value!r}")
    return value


def boolean(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    return value


def endpoints(key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(
        isinstance(v, str) and v for v in value
    ):
        raise ConfigError(f"{key}: expected a list of endpoint strings, got {value!r}")
    return tuple(value)


def log_level(key: str, value: Any) -> str:
    if value not in LOG_LEVELS:
        raise ConfigError(f"{key}: expected one of {', '.join(LOG_LEVELS)}, got {value!r}")
    return str(value)
