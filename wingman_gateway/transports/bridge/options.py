"""The HTTP bridge's settings, in one immutable value."""

from __future__ import annotations

import re
from typing import Any

import attrs

from wingman_gateway.checks import ConfigError

MiB = 1024 * 1024

# The longest a long poll is held; a client may ask for less with ?timeout=.
POLL_TIMEOUT = 30.0

# scheme://host[:port], as browsers send it in the Origin header.
_ORIGIN = re.compile(r"^https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?$")


@attrs.frozen
class BridgeOptions:
    """Bounds and timers of the HTTP bridge. Times are seconds."""

    session_timeout: float = 60.0  # no poll/stream this long ends a session
    queue_messages: int = 1000  # messages queued per session, unconfirmed
    queue_bytes: int = 4 * MiB  # bytes queued per session, unconfirmed
    heartbeat: float = 15.0  # SSE comment interval
    poll_timeout: float = POLL_TIMEOUT
    cors_origins: tuple[str, ...] = ()


def check_origin(key: str, value: Any) -> str:
    """One allowed CORS origin (``scheme://host[:port]``, or ``*`` for any)."""
    if value == "*" or (isinstance(value, str) and _ORIGIN.match(value)):
        return str(value)
    raise ConfigError(
        f"{key}: expected an origin like https://app.example or http://127.0.0.1:8080 "
        f"(scheme://host[:port], no path), or *, got {value!r}"
    )


def check_origins(key: str, value: Any) -> tuple[str, ...]:
    """A list of origins (a single string is taken as a list of one)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{key}: expected a list of origins, got {value!r}")
    return tuple(check_origin(key, origin) for origin in value)


def from_settings(
    values: dict[str, Any], flags: dict[str, Any], file_values: dict[str, Any]
) -> BridgeOptions | None:
    """The bridge's options from checked settings; None when it is turned off.

    ``--no-bridge`` (or ``"bridge": false`` in the file) turns it off;
    ``--cors-origin`` (repeatable) replaces the file's ``corsOrigins``.
    """
    if flags.get("no-bridge") or file_values.get("bridge", True) is False:
        return None
    origins = file_values.get("corsOrigins", ())
    if flags.get("cors-origin"):
        origins = check_origins("--cors-origin", list(flags["cors-origin"]))
    return BridgeOptions(
        session_timeout=values["bridgeSessionTimeout"] / 1000,
        queue_messages=values["bridgeQueue"],
        queue_bytes=values["bridgeQueueBytes"],
        heartbeat=values["bridgeHeartbeat"] / 1000,
        cors_origins=tuple(origins),
    )
