"""Printable listening addresses, for logs, ``/stats`` and status lines."""

from __future__ import annotations

from typing import Any


def address_text(address: Any) -> str:
    """``host:port`` of a listening address (``[v6]:port``; the path of a Unix socket)."""
    host, number = getattr(address, "host", None), getattr(address, "port", None)
    if host is None or number is None:
        return str(getattr(address, "name", address))
    return f"[{host}]:{number}" if ":" in host else f"{host}:{number}"
