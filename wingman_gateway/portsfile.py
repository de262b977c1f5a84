"""``--ports-file``: what the gateway bound, as JSON, for programs that start it.

Written once every listener is bound (atomically: a reader sees the whole
file or none), so the ``wingman`` command and tests learn the real ports
(``tcp:0`` picks one) without reading the log::

    {"pid": 1234, "version": "...",
     "listeners": [{"endpoint": "tcp6:0:interface=\\\\:\\\\:", "kind": "tcp", "host": "::", "port": 40123},
                   {"endpoint": "unix:/run/w.sock", "kind": "unix", "path": "/run/w.sock"}],
     "ssh": {"endpoint": "tcp:2222", "host": "0.0.0.0", "port": 2222, "fingerprint": "SHA256:..."}}

``ssh`` is ``null`` unless the built-in SSH server runs. An ``ssl`` listener
also names its ``certificate`` file, so a local client can trust exactly it.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Iterable, Protocol

from twisted.internet.address import UNIXAddress
from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.internet.endpoints import _parse as parse_endpoint  # type: ignore[attr-defined]  # Twisted's own tokenizer

from wingman_gateway import __version__

KINDS = ("tcp", "ssl", "unix")


class BoundListener(Protocol):
    """What a listener service offers: its endpoint string and endpoint, and its port once bound."""

    description: str
    endpoint: Any
    port: Any


def certificate_file(description: str) -> str | None:
    """The ``certKey`` (else ``privateKey``) file of an ``ssl:`` endpoint string."""
    # Twisted's tokenizer, so quoting (\\:) is read exactly as serverFromString reads it.
    args, kwargs = parse_endpoint(description)
    if not args or args[0] != "ssl":
        return None
    private_key = kwargs.get("privateKey") or (args[2] if len(args) > 2 else "server.pem")
    return os.path.abspath(kwargs.get("certKey") or private_key)


def describe(listener: BoundListener) -> dict[str, Any]:
    """One bound listener: endpoint, kind, and host and port, or path."""
    address = listener.port.getHost()
    entry: dict[str, Any] = {"endpoint": listener.description}
    if isinstance(address, UNIXAddress):
        name = address.name
        entry.update(kind="unix", path=name.decode("utf-8", "replace") if isinstance(name, bytes) else name)
        return entry
    secure = isinstance(listener.endpoint, SSL4ServerEndpoint)
    entry.update(kind="ssl" if secure else "tcp", host=address.host, port=address.port)
    if secure:
        entry["certificate"] = certificate_file(listener.description)
    return entry


def report(listeners: Iterable[BoundListener], ssh: BoundListener | None,
           ssh_fingerprint: str | None) -> dict[str, Any]:
    """The ports file's content."""
    ssh_entry = None
    if ssh is not None and ssh.port is not None:
        address = ssh.port.getHost()
        ssh_entry = {"endpoint": ssh.description, "host": getattr(address, "host", None),
                     "port": getattr(address, "port", None), "fingerprint": ssh_fingerprint}
    return {
        "pid": os.getpid(),
        "version": __version__,
        "listeners": [describe(listener) for listener in listeners if listener.port is not None],
        "ssh": ssh_entry,
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
