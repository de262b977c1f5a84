"""The audit log (``--audit-log PATH``): security-relevant events as JSON lines.

Each line is one object with ``time`` (UTC, ISO 8601), ``event``,
``source`` (the peer address; ``gateway`` for the gateway's own events)
and the event's details: credential kinds, key ids and SSH key
fingerprints, never a token or a key. Lines are collected during a reactor
turn and written with one ``write`` at its end, to a file opened for
appending; ``reopen`` (on SIGHUP) lets logrotate move the file away.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from wingman_gateway.auth import Grant
from wingman_gateway.checks import ConfigError
from wingman_gateway.events import ISink
from wingman_gateway.logs import get_logger
from wingman_gateway.state import Node

log = get_logger("wingman_gateway.audit")

# Lines kept while the file cannot be written, before the oldest are dropped.
MAX_PENDING = 10000
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode


def _open(path: str) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)


@implementer(ISink)
class AuditLog(Service):
    """Appends one JSON line per audited event to ``path``."""

    name = "audit log"

    def __init__(self, path: str, clock: IReactorTime) -> None:
        self.path = path
        self.clock = clock
        try:
            self._fd: int | None = _open(path)
        except OSError as error:
            raise ConfigError(f"audit-log: cannot open {path}: {error.strerror}")
        self._pending: list[str] = []
        self._call: Any = None

    # -- writing ------------------------------------------------------------

    def record(self, event: str, source: str, **details: Any) -> None:
        """Queue one line; it is written at the end of this reactor turn."""
        when = datetime.fromtimestamp(self.clock.seconds(), timezone.utc)
        entry = {"time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                 "event": event, "source": source, **details}
        self._pending.append(_dumps(entry) + "\n")
        if len(self._pending) > MAX_PENDING:
            del self._pending[: len(self._pending) - MAX_PENDING]
        if self._call is None:
            self._call = self.clock.callLater(0, self.flush)

    def flush(self) -> None:
        self._call = None
        if not self._pending or self._fd is None:
            return
        data = "".join(self._pending).encode("utf-8")
        try:
            written = 0
            while written < len(data):
                written += os.write(self._fd, data[written:])
        except OSError as error:
            log.error("cannot write the audit log {path}: {reason}", path=self.path,
                      reason=error.strerror)
            return  # kept (bounded) for the next try
        self._pending = []

    def reopen(self) -> None:
        """SIGHUP: write what is queued, then continue in a new file at ``path``."""
        self.flush()
        try:
            fd = _open(self.path)
        except OSError as error:
            log.error("cannot reopen the audit log {path}: {reason}; keeping the old file",
                      path=self.path, reason=error.strerror)
            return
        if self._fd is not None:
            os.close(self._fd)
        self._fd = fd

    def stopService(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self.flush()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        super().stopService()

    # -- what is audited ------------------------------------------------------

    def handlers(self) -> Mapping[str, Callable[..., None]]:
        return {
            "registered": self._registered,
            "register_refused": self._register_refused,
            "keyring_reload": self._keyring_reload,
            "ssh_login": lambda peer, **fields: self.record("ssh_login", peer, **fields),
            "ssh_refused": lambda peer, **fields: self.record("ssh_refused", peer, **fields),
            "forward_refused": lambda peer, **fields: self.record("forward_refused", peer, **fields),
            "api_call": lambda peer, **fields: self.record("api_call", peer, **fields),
            "admin_disconnect": self._admin_disconnect,
            "admin_close": lambda peer, **fields: self.record("admin_close", peer, **fields),
        }

    def _registered(self, node: Node, peer: str, transport: str, grant: Grant,
                    credential: str) -> None:
        self.record(
            "register", peer, nodeId=node.node_id, name=node.name, transport=transport,
            credential=credential, keyId=grant.key_id, subject=grant.subject,
        )

    def _register_refused(self, peer: str, transport: str, reason: str, credential: str,
                          key_id: str | None) -> None:
        self.record("register_refused", peer, transport=transport, reason=reason,
                    credential=credential, keyId=key_id)

    def _keyring_reload(self, trigger: str, changed: bool, ok: bool, keys: list[str],
                        problem: str | None) -> None:
        self.record("keyring_reload", "gateway", trigger=trigger, changed=changed, ok=ok,
                    keyIds=keys, problem=problem)

    def _admin_disconnect(self, peer: str, admin: str | None, node_id: str, name: str,
                          reason: str) -> None:
        self.record("admin_disconnect", peer, admin=admin, nodeId=node_id, name=name,
                    reason=reason)
