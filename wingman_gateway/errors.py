"""The protocol's error codes, and the exception that carries one to the client."""

from __future__ import annotations

from typing import Any

INVALID_MESSAGE = "INVALID_MESSAGE"
UNKNOWN_MESSAGE_TYPE = "UNKNOWN_MESSAGE_TYPE"
PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
AUTH_FAILED = "AUTH_FAILED"
FORBIDDEN = "FORBIDDEN"
MAX_NODES_REACHED = "MAX_NODES_REACHED"
NOT_REGISTERED = "NOT_REGISTERED"
ALREADY_REGISTERED = "ALREADY_REGISTERED"
GROUP_NOT_FOUND = "GROUP_NOT_FOUND"
NOT_A_MEMBER = "NOT_A_MEMBER"
NODE_NOT_FOUND = "NODE_NOT_FOUND"
RATE_LIMITED = "RATE_LIMITED"
INVALID_REQUEST = "INVALID_REQUEST"
# A clustered gateway that cannot reach the node's gateway now (Redis is down).
UNAVAILABLE = "UNAVAILABLE"
# Sent by the HTTP bridge when a node's bounded queue overflowed.
MESSAGES_LOST = "MESSAGES_LOST"

ALL_CODES = (
    INVALID_MESSAGE,
    UNKNOWN_MESSAGE_TYPE,
    PAYLOAD_TOO_LARGE,
    AUTH_FAILED,
    FORBIDDEN,
    MAX_NODES_REACHED,
    NOT_REGISTERED,
    ALREADY_REGISTERED,
    GROUP_NOT_FOUND,
    NOT_A_MEMBER,
    NODE_NOT_FOUND,
    RATE_LIMITED,
    INVALID_REQUEST,
    MESSAGES_LOST,
    UNAVAILABLE,
)

# The HTTP status of each code, for answers over HTTP (the bridge, the server API).
HTTP_STATUS = {
    INVALID_MESSAGE: 400,
    UNKNOWN_MESSAGE_TYPE: 400,
    INVALID_REQUEST: 400,
    AUTH_FAILED: 401,
    NOT_REGISTERED: 401,
    FORBIDDEN: 403,
    UNAVAILABLE: 503,
    NOT_A_MEMBER: 403,
    GROUP_NOT_FOUND: 404,
    NODE_NOT_FOUND: 404,
    ALREADY_REGISTERED: 409,
    PAYLOAD_TOO_LARGE: 413,
    RATE_LIMITED: 429,
    MAX_NODES_REACHED: 503,
}


class GatewayError(Exception):
    """A request the gateway refuses; becomes an ``error`` envelope.

    ``fatal`` errors (auth, capacity, abuse) close the connection after the
    error is sent; the others leave it open.
    """

    def __init__(
        self,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        fatal: bool = False,
        message_id: str | int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        self.fatal = fatal
        # The request's messageId when it was readable but the envelope was not.
        self.message_id = message_id

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
            if "retryAfterMs" in self.details:
                body["retryAfterMs"] = self.details["retryAfterMs"]
        return body

    def __repr__(self) -> str:
        return f"GatewayError({self.code!r}, {self.message!r})"
