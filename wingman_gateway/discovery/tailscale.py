"""Finding gateways on a tailnet.

The devices come from the local tailscaled's LocalAPI (``GET
/localapi/v0/status`` over its Unix socket; no key needed) or, when the
daemon cannot be used, from the Tailscale HTTP API with an API key (TLS
always verified). Devices are filtered by tag and by being online; each
candidate's ``/health`` is then probed concurrently with a short timeout,
and those answering as a wingman-gateway are the result.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any, Iterable
from urllib.parse import quote, urlsplit

import attrs
from twisted.internet.defer import Deferred, DeferredSemaphore, ensureDeferred, gatherResults
from twisted.internet.protocol import Protocol
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse

from wingman_gateway.discovery.records import FoundGateway, gateway_urls, host_for_url, sort_addresses
from wingman_gateway.discovery.settings import normalize_tag
from wingman_gateway.unixhttp import UnixSocket

STATUS_URL = b"http://local-tailscaled.sock/localapi/v0/status"  # Host: what tailscaled requires
DEFAULT_API_URL = "https://api.tailscale.com"
DEFAULT_GATEWAY_PORT = 3000
MAX_BODY = 16 * 1024 * 1024
MAX_CONCURRENT_PROBES = 64


class TailscaleError(Exception):
    """Tailscale could not be asked; the message says why (never a secret)."""


@attrs.frozen
class Device:
    """One tailnet device, from the LocalAPI or the HTTP API."""

    host_name: str
    dns_name: str | None
    ips: tuple[str, ...]
    online: bool
    tags: tuple[str, ...] = ()
    is_self: bool = False


# -- HTTP plumbing ------------------------------------------------------------


class _LimitedBody(Protocol):
    """Collects a response body, refusing one larger than ``limit`` bytes."""

    def __init__(self, finished: Deferred[bytes], limit: int) -> None:
        self.finished = finished
        self.limit = limit
        self.parts: list[bytes] = []
        self.size = 0

    def dataReceived(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            if not self.finished.called:
                self.finished.errback(TailscaleError(f"answer larger than {self.limit} bytes"))
            self.transport.stopProducing()  # type: ignore[union-attr]  # a TCP transport, also a producer
            return
        self.parts.append(data)

    def connectionLost(self, reason: Any = None) -> None:
        if self.finished.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self.finished.callback(b"".join(self.parts))
        else:
            self.finished.errback(reason)


def _reason(error: BaseException) -> str:
    """A readable reason, looking inside Twisted's wrapped request failures."""
    from wingman_gateway.client.tls import tls_failure

    reasons = getattr(error, "reasons", None)
    if reasons:
        inner = reasons[0]
        return tls_failure(inner) or _reason(inner.value)
    text = str(error) or error.__class__.__name__
    return text if error.__class__.__name__ in text else f"{error.__class__.__name__}: {text}"


async def _get_json(
    reactor: Any, agent: Agent, url: bytes, headers: dict[bytes, list[bytes]], timeout: float, what: str
) -> tuple[int, Any]:
    request: Deferred[IResponse] = agent.request(b"GET", url, Headers(headers))
    request.addTimeout(timeout, reactor)
    try:
        response = await request
        finished: Deferred[bytes] = Deferred()
        response.deliverBody(_LimitedBody(finished, MAX_BODY))
        finished.addTimeout(timeout, reactor)
        body = await finished
    except TailscaleError as error:
        raise TailscaleError(f"{what}: {error}") from None
    except Exception as error:
        raise TailscaleError(f"{what}: {_reason(error)}") from None
    if response.code != 200:
        return response.code, None
    try:
        return 200, json.loads(body)
    except ValueError:
        raise TailscaleError(f"{what}: the answer is not JSON") from None


# -- the LocalAPI and the HTTP API ----------------------------------------------


async def local_status(reactor: Any, socket_path: str, timeout: float = 3.0) -> dict[str, Any]:
    """tailscaled's ``/localapi/v0/status``; TailscaleError when it cannot be had."""
    agent = Agent.usingEndpointFactory(reactor, UnixSocket(reactor, socket_path, timeout))
    what = f"tailscaled at {socket_path}"
    code, status = await _get_json(reactor, agent, STATUS_URL, {}, timeout, what)
    if code == 403:
        raise TailscaleError(f"{what}: access denied (HTTP 403): run as root or as the "
                             "Tailscale operator (tailscale set --operator=$USER)")
    if code != 200:
        raise TailscaleError(f"{what}: HTTP {code}")
    if not isinstance(status, dict):
        raise TailscaleError(f"{what}: the status is not a JSON object")
    return status


def _ips(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    valid = []
    for item in value:
        try:
            valid.append(str(ipaddress.ip_address(item.split("/", 1)[0])))
        except (AttributeError, ValueError):
            continue
    return tuple(sort_addresses(valid))


def _text(value: Any) -> str | None:
    return value.rstrip(".") if isinstance(value, str) and value.strip(".") else None


def _tags(value: Any) -> tuple[str, ...]:
    return tuple(t for t in value if isinstance(t, str)) if isinstance(value, list) else ()


def _status_device(entry: Any, is_self: bool) -> Device | None:
    if not isinstance(entry, dict):
        return None
    ips = _ips(entry.get("TailscaleIPs"))
    if not ips:
        return None
    online = entry.get("Online")
    return Device(
        host_name=_text(entry.get("HostName")) or "?", dns_name=_text(entry.get("DNSName")),
        ips=ips, online=online is True or (is_self and online is None), tags=_tags(entry.get("Tags")),
        is_self=is_self,
    )


def devices_from_status(status: dict[str, Any]) -> list[Device]:
    """Self and every Peer of a LocalAPI status; malformed entries are skipped."""
    devices = [_status_device(status.get("Self"), True)]
    peers = status.get("Peer")
    if isinstance(peers, dict):
        devices += [_status_device(peer, False) for peer in peers.values()]
    return [d for d in devices if d is not None]


async def api_devices(
    reactor: Any, api_key: str, tailnet: str = "-", api_url: str = DEFAULT_API_URL,
    ca_file: str | None = None, timeout: float = 5.0,
) -> list[Device]:
    """The tailnet's devices from the Tailscale HTTP API (certificate verified)."""
    from wingman_gateway.client.errors import ClientError
    from wingman_gateway.client.tls import trust_root

    if urlsplit(api_url).scheme != "https":
        raise TailscaleError(f"the Tailscale API URL must be https:// (got {api_url!r}); "
                             "the API key is never sent in clear")
    try:
        policy = BrowserLikePolicyForHTTPS(trustRoot=trust_root(ca_file))
    except ClientError as error:
        raise TailscaleError(error.message) from None
    agent = Agent(reactor, contextFactory=policy, connectTimeout=timeout)
    url = f"{api_url.rstrip('/')}/api/v2/tailnet/{quote(tailnet, safe='')}/devices"
    headers = {b"authorization": [b"Bearer " + api_key.encode("utf-8")], b"accept": [b"application/json"]}
    what = f"the Tailscale API at {api_url}"
    code, body = await _get_json(reactor, agent, url.encode("ascii"), headers, timeout, what)
    if code in (401, 403):
        raise TailscaleError(f"{what}: the API key was refused (HTTP {code})")
    if code == 404:
        raise TailscaleError(f"{what}: no tailnet {tailnet!r} (HTTP 404)")
    if code != 200:
        raise TailscaleError(f"{what}: HTTP {code}")
    if not isinstance(body, dict) or not isinstance(body.get("devices"), list):
        raise TailscaleError(f"{what}: the answer has no device list")
    return devices_from_api(body["devices"])


def devices_from_api(entries: Iterable[Any]) -> list[Device]:
    """API devices (``hostname``, ``name``, ``addresses``, ``tags``, ``connectedToControl``)."""
    devices = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        ips = _ips(entry.get("addresses"))
        if not ips:
            continue
        connected = entry.get("connectedToControl", True)  # older answers lack the field
        devices.append(Device(
            host_name=_text(entry.get("hostname")) or "?", dns_name=_text(entry.get("name")),
            ips=ips, online=connected is not False, tags=_tags(entry.get("tags")),
        ))
    return devices


# -- candidates and probes --------------------------------------------------------


def candidates(devices: Iterable[Device], tags: Iterable[str] = ()) -> list[Device]:
    """Online devices carrying any of ``tags`` (every online device when none given)."""
    wanted = {normalize_tag(t) for t in tags}
    return [d for d in devices if d.online and (not wanted or wanted & set(d.tags))]


async def probe(reactor: Any, device: Device, port: int, timeout: float) -> FoundGateway | None:
    """The gateway at ``device``'s Tailscale IP, or None if no gateway answers there."""
    from wingman_gateway.client.probe import HealthError, fetch_health  # the one /health probe

    url = f"http://{host_for_url(device.ips[0])}:{port}/health"
    try:
        report = await fetch_health(reactor, url, timeout=timeout)
    except HealthError:
        return None
    hosts = list(device.ips) + ([device.dns_name] if device.dns_name else [])
    name = report.get("name")
    auth = report.get("auth")
    return FoundGateway(
        name=name if isinstance(name, str) and name else device.host_name,
        urls=tuple(gateway_urls(hosts, port, secure=False)), source="tailscale",
        auth=auth if auth in ("required", "optional") else "unknown",
        version=str(report.get("version", "unknown"))[:64], host=device.host_name,
        addresses=device.ips, port=port, dns_name=device.dns_name,
    )


async def probe_all(reactor: Any, devices: list[Device], port: int, timeout: float) -> list[FoundGateway]:
    """Probe every device at once (at most MAX_CONCURRENT_PROBES in flight)."""
    limit = DeferredSemaphore(MAX_CONCURRENT_PROBES)

    def one(device: Device) -> Deferred[FoundGateway | None]:
        return ensureDeferred(probe(reactor, device, port, timeout))

    probes = [limit.run(one, device) for device in devices]
    results = await gatherResults(probes)
    return sorted((r for r in results if r is not None), key=lambda g: (g.name.lower(), g.host or ""))


@attrs.frozen
class TailnetQuery:
    """How ``discover --tailscale`` looks: where to ask, what to keep."""

    socket_path: str
    tags: tuple[str, ...] = ()
    port: int = DEFAULT_GATEWAY_PORT
    probe_timeout: float = 1.5
    api_key: str | None = None
    tailnet: str = "-"
    api_url: str = DEFAULT_API_URL
    ca_file: str | None = None


async def list_devices(reactor: Any, query: TailnetQuery, notes: list[str]) -> list[Device]:
    """The LocalAPI's devices, or the HTTP API's when the daemon cannot be used and a key is set."""
    try:
        return devices_from_status(await local_status(reactor, query.socket_path))
    except TailscaleError as local_error:
        if query.api_key is None:
            raise TailscaleError(
                f"{local_error}; and no Tailscale API key is set for the fallback "
                "(--tailscale-api-key or TAILSCALE_API_KEY)"
            ) from None
        notes.append(f"{local_error}; asking the Tailscale API instead")
    return await api_devices(reactor, query.api_key, query.tailnet, query.api_url, query.ca_file)


async def discover_tailnet(reactor: Any, query: TailnetQuery, notes: list[str]) -> list[FoundGateway]:
    """Every online (tagged) tailnet device whose ``/health`` says wingman-gateway."""
    devices = await list_devices(reactor, query, notes)
    chosen = candidates(devices, query.tags)
    skipped = len(devices) - len(chosen)
    notes.append(f"{len(devices)} tailnet devices, {len(chosen)} probed on port {query.port}"
                 + (f" ({skipped} offline or without the tags)" if skipped else ""))
    return await probe_all(reactor, chosen, query.port, query.probe_timeout)
