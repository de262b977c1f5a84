"""``wingman gateway health``; the /health probe itself is ``client.probe``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from wingman_gateway.cli.runner import run_async
from wingman_gateway.client.probe import DEFAULT_PORT, HealthError, fetch_health, health_url

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
