"""Discovery settings: which announcers a gateway runs and what clients filter on.

The config file takes either our short form (``"discovery": "mdns,tailscale"``
or a list) or the object form::

    {"discovery": {"enabled": true, "method": "mdns", "name": "My Gateway",
                   "tailscale": {"apiKey": "...", "tags": ["wingman-gateway"]}}}
"""

from __future__ import annotations

from typing import Any

import attrs

METHODS = ("mdns", "tailscale")
DEFAULT_TAILSCALE_SOCKET = "/var/run/tailscale/tailscaled.sock"


@attrs.frozen
class DiscoverySettings:
    """The parsed ``discovery`` setting."""

    methods: tuple[str, ...] = ()
    name: str | None = None  # announced name; the gateway name when None
    tags: tuple[str, ...] = ()  # tailnet tags clients look for (``tag:NAME``)
    api_key: str | None = None  # Tailscale API key, used by ``wingman gateway discover``


def normalize_tag(tag: str) -> str:
    """``wingman`` and ``tag:wingman`` name the same Tailscale tag."""
    tag = tag.strip()
    return tag if tag.startswith("tag:") else f"tag:{tag}"


def _methods(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [part for part in value.split(",")]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"expected {' and/or '.join(METHODS)} (a comma list), got {value!r}")
    methods: list[str] = []
    for method in (v.strip().lower() for v in value):
        if method not in METHODS:
            raise ValueError(f"unknown discovery method {method!r} (known: {', '.join(METHODS)})")
        if method not in methods:
            methods.append(method)
    return tuple(methods)


def _string_list(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError(f"{key}: expected a list of strings, got {value!r}")
    return tuple(value)


def parse_discovery(value: Any) -> DiscoverySettings:
    """Check a ``discovery`` value (flag text, list or object form); ValueError says why."""
    if isinstance(value, DiscoverySettings):
        return value
    if not isinstance(value, dict):
        return DiscoverySettings(methods=_methods(value))
    known = {"enabled", "method", "methods", "name", "tailscale"}
    unknown = sorted(set(value) - known)
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    enabled = value.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ValueError(f"enabled: expected true or false, got {enabled!r}")
    method = value.get("methods", value.get("method", "mdns"))
    methods = _methods(method) if enabled else ()
    name = value.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise ValueError(f"name: expected a non-empty string, got {name!r}")
    tailscale = value.get("tailscale", {})
    if not isinstance(tailscale, dict):
        raise ValueError(f"tailscale: expected an object, got {tailscale!r}")
    unknown = sorted(set(tailscale) - {"apiKey", "tags"})
    if unknown:
        raise ValueError(f"tailscale: unknown key {unknown[0]!r} (known: apiKey, tags)")
    api_key = tailscale.get("apiKey")
    if api_key is not None and (not isinstance(api_key, str) or not api_key):
        raise ValueError("tailscale.apiKey: expected a non-empty string")
    tags = _string_list("tailscale.tags", tailscale.get("tags", []))
    return DiscoverySettings(
        methods=methods, name=name, tags=tuple(normalize_tag(t) for t in tags), api_key=api_key
    )
