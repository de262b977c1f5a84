"""``--ports-file``: what the gateway bound, as JSON, for programs that start it.

Written once every listener is bound (atomically: a reader sees the whole
file or none), so the ``wingman`` command and tests learn the real ports
(``tcp:0`` picks one) without reading the log::

    {"pid": 1234, "version": "...",
     "listeners": [{"endpoint": "tcp6:0:interface=\\\\:\\\\:", "kind": "tcp", "host": "::", "port": 40123},
                   {"endpoint": "unix:/run/w.sock", "kind": "unix", "path": "/run/w.sock"}],
     "ssh": {"endpoint": "tcp:2222", "host": "0.0.0.0", "port": 2222, "fingerprint": "SHA256:..."},
     "metrics": {"endpoint": "tcp:9464:interface=127.0.0.1", "kind": "tcp", "host": "127.0.0.1", "port": 9464}}

``ssh`` is ``null`` unless the built-in SSH server runs, ``metrics`` unless
``--metrics-listen`` is given. An ``ssl`` listener
also names its ``certificate`` file, so a local client can trust exactly it.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from twisted.internet.endpoints import _parse as parse_endpoint  # Twisted's own tokenizer

from wingman_gateway.offer import Bound, Offer

KINDS = ("tcp", "ssl", "unix")


def certificate_file(description: str) -> str | None:
    """The ``certKey`` (else ``privateKey``) file of an ``ssl:`` endpoint string."""
    # Twisted's tokenizer, so quoting (\\:) is read exactly as serverFromString reads it.
    args, kwargs = parse_endpoint(description)
    if not args or args[0] not in ("ssl", "tls"):
        return None
    private_key = kwargs.get("privateKey") or (args[2] if len(args) > 2 else "server.pem")
    return os.path.abspath(kwargs.get("certKey") or private_key)


def describe(bound: Bound) -> dict[str, Any]:
    """One bound listener: endpoint, kind, and host and port, or path."""
    entry: dict[str, Any] = {"endpoint": bound.description}
    if bound.path is not None:
        entry.update(kind="unix", path=bound.path)
        return entry
    entry.update(kind="ssl" if bound.tls else "tcp", host=bound.host, port=bound.port)
    if bound.tls:
        entry["certificate"] = certificate_file(bound.description)
    return entry


def report(offer: Offer) -> dict[str, Any]:
    """The ports file's content."""
    ssh = offer.ssh
    ssh_entry = None
    if ssh is not None:
        ssh_entry = {"endpoint": ssh.description, "host": ssh.host, "port": ssh.port,
                     "fingerprint": offer.ssh_fingerprint}
    return {
        "pid": os.getpid(),
        "version": offer.version,
        "listeners": [describe(bound) for bound in offer.listeners],
        "ssh": ssh_entry,
        "metrics": describe(offer.metrics) if offer.metrics is not None else None,
    }


def write(path: str, content: dict[str, Any]) -> None:
    """Write ``content`` to ``path`` atomically (a temporary file renamed over it)."""
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=".ports-", dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(content, stream, indent=2)
            stream.write("\n")
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def read(path: str) -> dict[str, Any] | None:
    """A ports file's content, or None while it is absent or unreadable."""
    try:
        with open(path, encoding="utf-8") as stream:
            data = json.load(stream)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
