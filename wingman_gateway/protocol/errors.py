"""The one exception the client raises: the gateway's error, or a local failure."""

from __future__ import annotations

from typing import Any

# Codes for failures found on this side of the wire (the gateway's own codes
# are in ``wingman_gateway.errors``).
NOT_CONNECTED = "NOT_CONNECTED"
TIMEOUT = "TIMEOUT"
CONNECTION_LOST = "CONNECTION_LOST"
CONNECTION_FAILED = "CONNECTION_FAILED"
TLS_ERROR = "TLS_ERROR"

LOCAL_CODES = (NOT_CONNECTED, TIMEOUT, CONNECTION_LOST, CONNECTION_FAILED, TLS_ERROR)


class ClientError(Exception):
    """A request refused by the gateway (its code) or failed locally.

    Callers switch on ``code``; ``message`` is for people and ``details``
    carries the gateway's structured extras (``limit``, ``retryAfterMs``).
    """

    def __init__(self, code: str, message: str = "", details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message or code
        self.details = details

    @classmethod
    def from_payload(cls, payload: Any) -> "ClientError":
        """Build from an ``error`` envelope's payload, tolerating odd shapes."""
        if not isinstance(payload, dict):
            return cls("INVALID_MESSAGE", f"malformed error from the gateway: {payload!r}")
        details = payload.get("details")
        return cls(
            str(payload.get("code", "UNKNOWN")),
            str(payload.get("message", "")),
            details if isinstance(details, dict) else None,
        )

    def __repr__(self) -> str:
        return f"ClientError({self.code!r}, {self.message!r})"
