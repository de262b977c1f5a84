"""``wingman gateway health``; the /health probe itself is ``client.probe``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from wingman_gateway.cli.helptext import HelpFormatter
from wingman_gateway.cli.home import Home
from wingman_gateway.cli.local import health_places, running_state, trust_for
from wingman_gateway.cli.runner import run_async
from wingman_gateway.client.probe import DEFAULT_PORT, HealthError, Trust, fetch_health, health_url

__all__ = ["HealthError", "describe", "fetch_health", "health_url"]

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
    if args.url or args.host or args.port:
        targets = [(health_url(args.url or f"{args.host or '127.0.0.1'}:{args.port or DEFAULT_PORT}"),
                    Trust(ca_file=args.ca_file))]
    else:
        # No address given: the gateway `wingman gateway start` runs here, else the default.
        state = running_state(Home.from_environment())
        ca_file = args.ca_file or (state or {}).get("caFile")
        targets = [(where.health, trust_for(where, ca_file)) for where in health_places(state)]
    error: HealthError | None = None
    for url, trust in targets:
        try:
            report = await fetch_health(reactor, url, args.timeout, trust)
            break
        except HealthError as failed:
            error = error or failed
    else:
        print(f"wingman: gateway unreachable: {error}")
        return 1
    print(json.dumps(report, indent=2) if args.json else describe(report))
    return 0 if report.get("status") == "healthy" else 1


def add_parser(actions: Any) -> None:
    parser = actions.add_parser(
        "health", help="print a gateway's health report",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("url", nargs="?", help="gateway URL (http://, https://, ws://, wss://, unix:SOCKET) "
                        "or host:port (default: the gateway `wingman gateway start` runs, else 127.0.0.1:3000)")
    parser.add_argument("--host", help="gateway host, when no URL (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, help=f"gateway port, when no URL (default: {DEFAULT_PORT})")
    parser.add_argument("--ca-file", metavar="PEM", help="CA bundle that verifies an https:// or wss:// gateway "
                        "(default: the system trust store)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait")
    parser.add_argument("--json", action="store_true", help="print the raw JSON report")
    parser.set_defaults(run=lambda args: run_async(health_command, args))
