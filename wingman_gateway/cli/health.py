"""``wingman gateway health`` and the /health probe the other commands share."""

from __future__ import annotations

import argparse
import json
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from twisted.internet.defer import Deferred
from twisted.web.client import Agent, readBody

from wingman_gateway.cli.runner import run_async

DEFAULT_PORT = 3000


class HealthError(Exception):
    """The gateway did not answer, or not as a healthy gateway."""


def health_url(target: str) -> str:
    """The /health URL for a gateway given as host[:port], http(s):// or ws(s):// URL."""
    if "://" not in target:
        target = "http://" + target
    parts = urlsplit(target)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    netloc = parts.netloc if parts.port else f"{parts.netloc}:{DEFAULT_PORT}"
    return urlunsplit((scheme, netloc, "/health", "", ""))


async def fetch_health(reactor: Any, url: str, timeout: float = 5.0) -> dict[str, Any]:
    """GET /health; the report, or HealthError saying why not."""
    agent = Agent(reactor, connectTimeout=timeout)
    request: Deferred[Any] = agent.request(b"GET", url.encode("ascii"))
    request.addTimeout(timeout, reactor)
    try:
        response = await request
        body = await readBody(response)
    except Exception as error:  # connection refused, timeout, TLS …
        raise HealthError(f"{url}: {error.__class__.__name__}: {error}") from None
    if response.code != 200:
        raise HealthError(f"{url}: HTTP {response.code}")
    try:
        report = json.loads(body)
    except ValueError:
        raise HealthError(f"{url}: not a JSON health report") from None
    if not isinstance(report, dict) or report.get("service") != "wingman-gateway":
        raise HealthError(f"{url}: not a wingman-gateway")
    return report


def describe(report: dict[str, Any]) -> str:
    stats = report.get("stats", {})
    uptime = int(stats.get("uptime", 0) / 1000)
    onion = report.get("onion")
    return (
        f"{report.get('name')} (wingman-gateway {report.get('version')}): {report.get('status')}\n"
        f"  uptime {uptime} s, {stats.get('totalNodes')} nodes, {stats.get('totalGroups')} rooms, "
        f"{stats.get('messagesProcessed')} messages"
    ) + (f"\n  onion: {onion.get('url')} ({onion.get('state')})" if isinstance(onion, dict) else "")


async def health_command(reactor: Any, args: argparse.Namespace) -> int:
    target = args.url or f"{args.host}:{args.port}"
    url = health_url(target)
    try:
        report = await fetch_health(reactor, url, args.timeout)
    except HealthError as error:
        print(f"wingman: gateway unreachable: {error}")
        return 1
    print(json.dumps(report, indent=2) if args.json else describe(report))
    return 0 if report.get("status") == "healthy" else 1


def add_parser(actions: Any) -> None:
    parser = actions.add_parser(
        "health", help="print a gateway's health report",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("url", nargs="?", help="gateway URL (http://, ws://) or host:port")
    parser.add_argument("--host", default="127.0.0.1", help="gateway host, when no URL")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="gateway port, when no URL")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait")
    parser.add_argument("--json", action="store_true", help="print the raw JSON report")
    parser.set_defaults(run=lambda args: run_async(health_command, args))
