"""``Authorization: Bearer`` on every HTTP endpoint, read in one place."""

from __future__ import annotations

from typing import Callable

from twisted.web.server import Request

from wingman_gateway.auth import AuthError, Authenticator
from wingman_gateway.web.headers import header

CHALLENGE = b'Bearer realm="wingman-gateway"'


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header, or None."""
    scheme, _, value = (header(request, "authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def token_check(authenticator: Authenticator) -> Callable[[Request], str | None]:
    """A check for endpoints guarded by node tokens when auth is on.

    It returns None when the request may go on, else why it may not (and
    sets the ``WWW-Authenticate`` challenge).
    """

    def check(request: Request) -> str | None:
        if not authenticator.required:
            return None
        try:
            authenticator.authenticate(bearer_token(request) or "")
        except AuthError as refusal:
            request.setHeader(b"www-authenticate", CHALLENGE)
            return f"authentication failed: {refusal}"
        return None

    return check
