"""``wingman gateway discover``: list the gateways on the LAN (mDNS) or the tailnet.

Also the discovery behind ``wingman gateway join --auto-discover``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.defer import ensureDeferred

from wingman_gateway.cli.runner import run_async
from wingman_gateway.discovery.records import FoundGateway, describe
from wingman_gateway.discovery.settings import DEFAULT_TAILSCALE_SOCKET, parse_discovery
from wingman_gateway.discovery.tailscale import (
    DEFAULT_API_URL,
    DEFAULT_GATEWAY_PORT,
    TailnetQuery,
    TailscaleError,
    discover_tailnet,
)

AUTO_DISCOVER_SECONDS = 5.0
MAX_MILLISECONDS = 600_000


def milliseconds(text: str) -> float:
    """An argparse type: whole milliseconds (1 to 600000), returned in seconds."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole milliseconds, got {text!r}") from None
    if not 1 <= value <= MAX_MILLISECONDS:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_MILLISECONDS} ms, got {value}")
    return value / 1000


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a TCP port (1-65535), got {text!r}")
    return value


def _progress(text: str) -> None:
    print(f"wingman: {text}", file=sys.stderr, flush=True)


async def _mdns(reactor: Any, timeout: float, first: bool, verbose: bool = False) -> tuple[list[FoundGateway], list[str]]:
    from wingman_gateway.discovery.browse import browse_mdns

    return await browse_mdns(reactor, timeout, first, _progress if verbose else None)


def _config_tailscale(path: str | None) -> tuple[tuple[str, ...], str | None]:
    """Tags and API key from a gateway config file's ``discovery`` (object form)."""
    if not path:
        return (), None
    from wingman_gateway.checks import ConfigError
    from wingman_gateway.config import load_file

    try:
        discovery = load_file(path).get("discovery")
    except ConfigError as error:
        raise TailscaleError(str(error)) from None
    if discovery is None:
        return (), None
    settings = parse_discovery(discovery)
    return settings.tags, settings.api_key


async def _tailnet(reactor: Any, args: argparse.Namespace) -> tuple[list[FoundGateway], list[str]]:
    tags, key = _config_tailscale(args.config)
    query = TailnetQuery(
        socket_path=args.tailscale_socket, tags=tuple(args.tag) or tags, port=args.port,
        probe_timeout=min(args.probe_timeout, args.timeout),
        api_key=args.tailscale_api_key or os.environ.get("TAILSCALE_API_KEY") or key,
        tailnet=args.tailnet, api_url=args.tailscale_api_url, ca_file=args.tailscale_ca_file,
    )
    notes: list[str] = []
    search = ensureDeferred(discover_tailnet(reactor, query, notes))
    search.addTimeout(args.timeout, reactor)
    try:
        found = await search
    except DeferredTimeout:  # the overall --timeout
        raise TailscaleError(f"no answer within {args.timeout * 1000:.0f} ms") from None
    return found, notes


async def _registry(reactor: Any, args: argparse.Namespace) -> tuple[list[FoundGateway], list[str]]:
    from wingman_gateway.cluster.registrylist import live_gateways
    from wingman_gateway.cluster.settings import cluster_settings

    settings = cluster_settings(args.cluster, args.cluster_ca, args.cluster_password_file, None)
    assert settings is not None
    return await live_gateways(settings, reactor, args.timeout), []


async def discover_command(reactor: Any, args: argparse.Namespace) -> int:
    where = "tailnet" if args.tailscale else "cluster registry" if args.cluster else "LAN (mDNS)"
    try:
        if args.cluster:
            found, notes = await _registry(reactor, args)
        elif args.tailscale:
            found, notes = await _tailnet(reactor, args)
        else:
            found, notes = await _mdns(reactor, args.timeout, args.first, args.verbose)
    except TailscaleError as error:
        print(f"wingman: tailscale discovery failed: {error}", file=sys.stderr)
        return 1
    except ValueError as error:  # a bad --cluster URL (ConfigError) or an unreadable registry
        print(f"wingman: cluster discovery failed: {error}", file=sys.stderr)
        return 1
    except (OSError, RuntimeError) as error:  # zeroconf: sockets, or no interface to use
        print(f"wingman: mDNS discovery failed: {getattr(error, 'strerror', None) or error}", file=sys.stderr)
        return 1
    if args.first:
        found = found[:1]
    if args.verbose:
        for note in notes:
            print(f"wingman: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps([gateway.as_json() for gateway in found], indent=2))
    elif found:
        print(f"found {len(found)} gateway{'s' if len(found) != 1 else ''} on the {where}:")
        for gateway in found:
            print("\n".join(describe(gateway, args.verbose)))
    if not found:
        print(f"wingman: no gateway found on the {where} within {args.timeout * 1000:.0f} ms",
              file=sys.stderr)
        return 1
    return 0


async def auto_discover_url(reactor: Any, json_mode: bool) -> str | None:
    """``join --auto-discover``: the first URL of the first gateway announced on the LAN."""
    try:
        found, _ = await _mdns(reactor, AUTO_DISCOVER_SECONDS, first=True)
    except (OSError, RuntimeError) as error:
        print(f"wingman: mDNS discovery failed: {getattr(error, 'strerror', None) or error}", file=sys.stderr)
        return None
    if not found:
        print(f"wingman: no gateway found on the LAN within {AUTO_DISCOVER_SECONDS:g} s", file=sys.stderr)
        return None
    gateway = found[0]
    if json_mode:
        print(json.dumps({"type": "local", "event": "discovered", "name": gateway.name,
                          "url": gateway.urls[0]}), file=sys.stderr, flush=True)
    else:
        print(f"wingman: discovered gateway {gateway.name!r} at {gateway.urls[0]}", file=sys.stderr)
    return gateway.urls[0]


def add_parser(actions: Any) -> None:
    parser = actions.add_parser(
        "discover", help="find gateways on the LAN (mDNS) or the tailnet (--tailscale)",
        description="List the gateways announced on the LAN (mDNS/DNS-SD), or with --tailscale "
                    "the tailnet devices whose /health answers as a wingman-gateway.",
    )
    parser.add_argument("--timeout", type=milliseconds, default="5000", metavar="MS",
                        help="how long to look, in milliseconds (default: 5000)")
    parser.add_argument("--first", action="store_true", help="stop at the first gateway found")
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="also show host, addresses and TXT entries; progress on stderr")
    parser.add_argument("--json", action="store_true", help="print a JSON array of gateways")
    tailnet = parser.add_argument_group("Tailscale")
    tailnet.add_argument("--tailscale", action="store_true", help="look on the tailnet instead of the LAN")
    tailnet.add_argument("--tag", action="append", default=[],
                         help="only devices with this tag (tag:NAME or NAME), repeatable")
    tailnet.add_argument("--port", type=_port, default=DEFAULT_GATEWAY_PORT,
                         help=f"gateway port probed on each device (default: {DEFAULT_GATEWAY_PORT})")
    tailnet.add_argument("--probe-timeout", type=milliseconds, default="1500", metavar="MS",
                         help="how long one /health probe may take, ms (default: 1500)")
    tailnet.add_argument("--tailscale-socket", default=DEFAULT_TAILSCALE_SOCKET, metavar="PATH",
                         help=f"tailscaled LocalAPI socket (default: {DEFAULT_TAILSCALE_SOCKET})")
    tailnet.add_argument("--tailscale-api-key", metavar="KEY", help="API key for the fallback when "
                         "tailscaled cannot be used (better: the TAILSCALE_API_KEY variable)")
    tailnet.add_argument("--tailnet", default="-", help="tailnet name for the API (default: -, the key's own)")
    tailnet.add_argument("--tailscale-api-url", default=DEFAULT_API_URL, metavar="URL",
                         help=f"Tailscale API base URL, https only (default: {DEFAULT_API_URL})")
    tailnet.add_argument("--tailscale-ca-file", metavar="PEM", help="CA bundle that verifies the API "
                         "(default: the system trust store, or SSL_CERT_FILE)")
    tailnet.add_argument("--config", metavar="FILE", help="gateway config file: its "
                         "discovery.tailscale tags and apiKey apply")
    cluster = parser.add_argument_group("Cluster registry")
    cluster.add_argument("--cluster", metavar="URL", help="list the live gateways of the cluster whose "
                         "Redis is at URL (redis://[USER@]HOST:PORT[/DB] or rediss://), least loaded first")
    cluster.add_argument("--cluster-ca", metavar="PEM", help="CA file that verifies a rediss:// server")
    cluster.add_argument("--cluster-password-file", metavar="FILE",
                         help="file holding the Redis password (default: the REDISCLI_AUTH variable)")
    parser.set_defaults(run=lambda args: run_async(discover_command, args))
