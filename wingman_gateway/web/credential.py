"""The admin credential (``--admin-token-file``) and the gates of guarded endpoints.

The admin token is read from a file (its first line), so it is never on a
command line; it is compared in constant time and reported only by its id
(``admin:`` and eight hex digits of its SHA-256), never itself. A gate
answers ``None`` (go on) or the ``Refusal`` to send: 401 when no
credential was presented, 403 when a wrong one was.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Callable

import attrs
from twisted.web.resource import Resource
from twisted.web.server import Request

from wingman_gateway import errors
from wingman_gateway.auth import AuthError, Authenticator
from wingman_gateway.checks import ConfigError
from wingman_gateway.logs import get_logger
from wingman_gateway.web.bearer import CHALLENGE, bearer_token
from wingman_gateway.web.health import json_response

log = get_logger("wingman_gateway.admin")


@attrs.frozen
class Refusal:
    """Why a request may not go on, as its answer: HTTP status, protocol code, message."""

    status: int
    code: str
    message: str

    def answer(self, request: Request) -> bytes:
        if self.status == 401:
            request.setHeader(b"www-authenticate", CHALLENGE)
        return json_response(
            request, self.status, {"error": {"code": self.code, "message": self.message}}
        )


Gate = Callable[[Request], "Refusal | None"]

MISSING = Refusal(
    401, errors.AUTH_FAILED, "this endpoint needs the admin credential (Authorization: Bearer)"
)
WRONG = Refusal(403, errors.FORBIDDEN, "the credential presented is not the admin credential")
SCOPED = Refusal(
    403, errors.FORBIDDEN,
    "this token is limited to some rooms; this report needs an unscoped token",
)
NO_ADMIN = Refusal(
    403, errors.FORBIDDEN,
    "no admin credential is configured: start the gateway with --admin-token-file",
)


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        token = handle.read(4096).split(b"\n", 1)[0].strip()
    if not token:
        raise ValueError("the first line holds no token")
    return token


class AdminCredential:
    """The one admin token, re-read on ``reload`` (SIGHUP)."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._token = _read(path)
        except (OSError, ValueError) as error:
            problem = getattr(error, "strerror", None) or str(error)
            raise ConfigError(f"admin-token-file: cannot use {path}: {problem}")
        if os.stat(path).st_mode & 0o077:
            log.warn("admin token file {path} is readable by others; chmod 600 it", path=path)

    @property
    def id(self) -> str:
        """How the audit log names this credential (never the token)."""
        return "admin:" + hashlib.sha256(self._token).hexdigest()[:8]

    def reload(self) -> None:
        try:
            self._token = _read(self.path)
        except (OSError, ValueError) as error:
            problem = getattr(error, "strerror", None) or str(error)
            log.error("cannot re-read admin token file {path}: {problem}; keeping the old token",
                      path=self.path, problem=problem)

    def matches(self, token: str | None) -> bool:
        if token is None:
            return False
        return hmac.compare_digest(token.encode("utf-8", "surrogateescape"), self._token)

    def check(self, request: Request) -> Refusal | None:
        token = bearer_token(request)
        if token is None:
            return MISSING
        return None if self.matches(token) else WRONG


class Refused(Resource):
    """An endpoint that answers every request with one refusal."""

    isLeaf = True

    def __init__(self, refusal: Refusal) -> None:
        super().__init__()
        self.refusal = refusal

    def render(self, request: Request) -> bytes:
        return self.refusal.answer(request)


def admin_gate(admin: AdminCredential | None) -> Gate:
    """The admin credential alone (``/api/*``, ``/metrics`` on the listeners)."""
    if admin is None:
        return lambda request: NO_ADMIN
    return admin.check


def stats_gate(admin: AdminCredential | None, authenticator: Authenticator) -> Gate:
    """``/stats``: the admin credential, or a node token when auth is on.

    Public when neither is configured; a refused node token is answered as
    before an admin credential existed (401, the token's reason).
    """

    def check(request: Request) -> Refusal | None:
        token = bearer_token(request)
        if admin is not None and admin.matches(token):
            return None
        if authenticator.required:
            try:
                grant = authenticator.authenticate(token or "")
            except AuthError as refusal:
                return Refusal(401, errors.AUTH_FAILED, f"authentication failed: {refusal}")
            if grant.rooms is not None:  # the report covers every room and node
                return SCOPED
            return None
        if admin is None:
            return None
        return MISSING if token is None else WRONG

    return check
