"""What an announcement says and what a discovery finds, shared by mDNS and Tailscale."""

from __future__ import annotations

import ipaddress
from typing import Any, Iterable, Mapping

import attrs

SERVICE_TYPE = "_wingman-gateway._tcp.local."
TXT_VERSION = "1"
# DNS-SD instance names are one DNS label: at most 63 bytes (RFC 6763, 4.1.1).
MAX_INSTANCE_BYTES = 63


class BadAnnouncement(ValueError):
    """An announcement of our service type that a client cannot use."""


def instance_name(name: str, suffix: str = "") -> str:
    """``name`` (plus ``suffix``) cut to one DNS label, never inside a UTF-8 character."""
    room = MAX_INSTANCE_BYTES - len(suffix.encode("utf-8"))
    base = name.encode("utf-8")[:room].decode("utf-8", "ignore").strip() or "wingman-gateway"
    return base + suffix


def txt_record(
    *, version: str, auth_required: bool, secure: bool, bridge: bool, ssh_port: int | None,
    onion: str | None = None,
) -> dict[str, str]:
    """The DNS-SD TXT key=value entries a gateway announces (``txtvers`` first)."""
    record = {
        "txtvers": TXT_VERSION,
        "version": version,
        "auth": "required" if auth_required else "optional",
        "transport": "wss" if secure else "ws",
        "path": "/ws",
        "bridge": "yes" if bridge else "no",
    }
    if ssh_port is not None:
        record["ssh"] = str(ssh_port)
    if onion is not None:
        record["onion"] = onion  # the gateway's ws://....onion/ws URL (--onion)
    return record


def host_for_url(address: str) -> str:
    """An address or host name as it stands in a URL (IPv6 in brackets, no zone)."""
    try:
        parsed = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address.rstrip(".")
    return f"[{parsed}]" if parsed.version == 6 else str(parsed)


def gateway_urls(hosts: Iterable[str], port: int, secure: bool, path: str = "/ws") -> list[str]:
    scheme = "wss" if secure else "ws"
    urls: list[str] = []
    for host in hosts:
        url = f"{scheme}://{host_for_url(host)}:{port}{path}"
        if url not in urls:
            urls.append(url)
    return urls


def sort_addresses(addresses: Iterable[str]) -> list[str]:
    """IPv4 before IPv6, link-local last: the order clients should try them in."""

    def rank(address: str) -> tuple[int, int]:
        parsed = ipaddress.ip_address(address.split("%", 1)[0])
        return (parsed.version, 1 if parsed.is_link_local else 0)

    return sorted(dict.fromkeys(addresses), key=rank)


@attrs.frozen
class FoundGateway:
    """One gateway a discovery found, with every way to reach it."""

    name: str
    urls: tuple[str, ...]
    source: str  # "mdns", "tailscale" or "cluster"
    auth: str = "unknown"  # required, optional or unknown
    version: str = "unknown"
    host: str | None = None
    addresses: tuple[str, ...] = ()
    port: int | None = None
    txt: Mapping[str, str] = attrs.field(factory=dict)
    dns_name: str | None = None  # MagicDNS name (Tailscale)
    load: int | None = None  # nodes connected now (from a cluster's registry)

    def as_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "name": self.name, "urls": list(self.urls), "auth": self.auth,
            "version": self.version, "source": self.source, "host": self.host,
            "addresses": list(self.addresses), "port": self.port,
        }
        if self.txt:
            record["txt"] = dict(self.txt)
        if self.dns_name is not None:
            record["dnsName"] = self.dns_name
        if self.load is not None:
            record["load"] = self.load
        return record


def from_announcement(
    instance: str, port: int | None, host: str | None, addresses: Iterable[str],
    properties: Mapping[bytes, bytes | None],
) -> FoundGateway:
    """A found gateway from a resolved mDNS service, or BadAnnouncement saying why not."""
    txt: dict[str, str] = {}
    for key, value in properties.items():
        name = key.decode("utf-8", "replace").lower()
        if name and name not in txt:  # RFC 6763 6.4: the first occurrence wins
            txt[name] = "" if value is None else value.decode("utf-8", "replace")
    if txt.get("txtvers") != TXT_VERSION:
        raise BadAnnouncement(f"unsupported txtvers {txt.get('txtvers')!r}")
    transport = txt.get("transport", "ws")
    if transport not in ("ws", "wss"):
        raise BadAnnouncement(f"unknown transport {transport!r}")
    path = txt.get("path", "/ws")
    if not path.startswith("/") or any(c in path for c in " ?#\\") or len(path) > 200:
        raise BadAnnouncement(f"bad path {path[:40]!r}")
    if not port:
        raise BadAnnouncement("no port")
    usable = sort_addresses(addresses)
    if not usable:
        raise BadAnnouncement("no address")
    auth = txt.get("auth", "unknown")
    return FoundGateway(
        name=instance, urls=tuple(gateway_urls(usable, port, transport == "wss", path)),
        source="mdns", auth=auth if auth in ("required", "optional") else "unknown",
        version=txt.get("version", "unknown")[:64], host=host.rstrip(".") if host else None,
        addresses=tuple(usable), port=port, txt=txt,
    )


def describe(found: FoundGateway, verbose: bool) -> list[str]:
    """Lines a person reads: name, URLs, auth and version (more with ``verbose``)."""
    load = "" if found.load is None else f", {found.load} node{'s' if found.load != 1 else ''}"
    lines = [f"{found.name}  (wingman-gateway {found.version}, auth {found.auth}, via {found.source}{load})"]
    lines += [f"    {url}" for url in found.urls]
    if verbose:
        if found.host:
            lines.append(f"    host:      {found.host}")
        if found.dns_name:
            lines.append(f"    MagicDNS:  {found.dns_name}")
        if found.addresses:
            lines.append(f"    addresses: {', '.join(found.addresses)}")
        if found.port is not None:
            lines.append(f"    port:      {found.port}")
        if found.txt:
            lines.append("    TXT:       " + " ".join(f"{k}={v}" for k, v in found.txt.items()))
    return lines
