"""``Authorization: Bearer`` on every HTTP endpoint, read in one place."""

from __future__ import annotations

from typing import Callable

from twisted.web.server import Request

from wingman_gateway.auth import AuthError, Authenticator

CHALLENGE = b'Bearer realm="wingman-gateway"'


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header, or None."""
    scheme, _, value = (request.getHeader("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


Refusal = tuple[int, str, str]  # HTTP status, error code, message


def token_check(authenticator: Authenticator) -> Callable[[Request], Refusal | None]:
    """A check for endpoints guarded by unscoped node tokens when auth is on.

    It returns None when the request may go on, else why it may not (and
    sets the ``WWW-Authenticate`` challenge). A token limited to some rooms
    is refused (403): such endpoints report on every room and node.
    """

    def check(request: Request) -> Refusal | None:
        if not authenticator.required:
            return None
        try:
            grant = authenticator.authenticate(bearer_token(request) or "")
        except AuthError as refusal:
            request.setHeader(b"www-authenticate", CHALLENGE)
            return 401, "AUTH_FAILED", f"authentication failed: {refusal}"
        if grant.rooms is not None:
            return 403, "FORBIDDEN", "this token is limited to some rooms; this report needs an unscoped token"
        return None

    return check
