"""The gateway this ``WINGMAN_HOME`` started: its listeners, URLs and TLS trust.

``start`` records what the gateway bound (read from its ``--ports-file``) in
``gateway.json``; commands given no URL use it while that gateway runs, and
the default (127.0.0.1:3000) otherwise.
"""

from __future__ import annotations

from typing import Any

import attrs

from wingman_gateway.cli.home import Home, gateway_alive
from wingman_gateway.client.probe import UNIX_PREFIX, Trust

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 3000


@attrs.frozen
class Place:
    """Where one listener is reached from this machine."""

    kind: str  # tcp, ssl or unix
    health: str  # http(s)://…/health, or unix:SOCKET
    websocket: str | None  # ws(s)://…/ws; None for a Unix socket (clients speak TCP)
    certificate: str | None = None  # an ssl listener's certificate file


def _connect_host(host: str) -> str:
    """The address a local client uses for a listener bound to ``host``."""
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"  # '::' is dual-stack: IPv4 loopback reaches it too
    return f"[{host}]" if ":" in host else host


def place(entry: dict[str, Any]) -> Place:
    """The URLs of one ports-file listener entry."""
    kind = entry.get("kind", "tcp")
    if kind == "unix":
        return Place("unix", UNIX_PREFIX + str(entry["path"]), None)
    host = _connect_host(str(entry.get("host", "")))
    secure = kind == "ssl"
    base = f"{host}:{entry['port']}"
    return Place(
        kind,
        f"{'https' if secure else 'http'}://{base}/health",
        f"{'wss' if secure else 'ws'}://{base}/ws",
        entry.get("certificate") if secure else None,
    )


def places(ports: dict[str, Any]) -> list[Place]:
    return [place(entry) for entry in ports.get("listeners", ())]


def running_state(home: Home) -> dict[str, Any] | None:
    """The last start's record, while the gateway it started still runs."""
    pid = home.read_pid()
    if pid is None or not gateway_alive(pid):
        return None
    state = home.load_state()
    return state if state.get("listeners") and state.get("pid") == pid else None


def trust_for(target: Place, ca_file: str | None) -> Trust:
    """``--ca-file`` when given, else exactly the certificate the gateway was started with."""
    return Trust(ca_file=ca_file, certificate=target.certificate)


def health_places(state: dict[str, Any] | None) -> list[Place]:
    """The running local gateway's listeners (WebSocket-capable first), else the default."""
    if state is None:
        return [place({"kind": "tcp", "host": DEFAULT_HOST, "port": DEFAULT_PORT})]
    found = places({"listeners": state["listeners"]})
    return sorted(found, key=lambda p: p.websocket is None)


def websocket_place(state: dict[str, Any] | None) -> Place | None:
    """The first listener a node can join over, of the running local gateway (else the default)."""
    for candidate in health_places(state):
        if candidate.websocket is not None:
            return candidate
    return None
