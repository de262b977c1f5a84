"""Reading a cluster's registry from outside: the live gateways, as discovery finds them."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import defer

from wingman_gateway.cluster.link import RedisLink
from wingman_gateway.cluster.settings import ClusterSettings
from wingman_gateway.cluster.wire import Names
from wingman_gateway.discovery.records import FoundGateway


class RegistryError(ValueError):
    """The registry could not be read (Redis unreachable, refused)."""


def found_gateway(entry: dict[str, Any]) -> FoundGateway:
    urls = tuple(str(url) for url in entry.get("urls") or ())
    auth = entry.get("auth")
    return FoundGateway(
        name=str(entry.get("name") or entry.get("id")),
        urls=urls,
        source="cluster",
        auth=auth if auth in ("required", "optional") else "unknown",
        version=str(entry.get("version") or "unknown"),
        load=int(entry.get("nodes") or 0),
    )


async def live_gateways(settings: ClusterSettings, reactor: Any, timeout: float) -> list[FoundGateway]:
    """Every gateway whose registry entry has not expired, least loaded first."""
    connected: defer.Deferred[None] = defer.Deferred()
    link = RedisLink(settings, [], lambda *_: None, lambda: connected.callback(None), lambda: None, reactor)
    link.start()
    try:
        connected.addTimeout(timeout, reactor)
        try:
            await connected
        except defer.TimeoutError:
            raise RegistryError(link.reason or f"no answer from {settings.url}") from None
        names = Names(settings.db)
        members = await _run(link, "SMEMBERS", names.gateways)
        ids = sorted(str(m) for m in members or ())
        entries = await _run(link, "MGET", *[names.entry(i) for i in ids]) if ids else []
    finally:
        await link.stop()
    found = []
    for text in entries:
        if text is None:
            continue  # expired: that gateway is gone
        try:
            found.append(found_gateway(json.loads(text)))
        except (ValueError, TypeError, AttributeError):
            continue
    return sorted(found, key=lambda g: (g.load or 0, g.name))


async def _run(link: RedisLink, *args: Any) -> Any:
    sent = link.execute(*args)
    if sent is None:
        raise RegistryError(link.reason or "lost the connection")
    return await sent
