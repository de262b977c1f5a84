"""The ``wingman`` command: run, supervise and use a Wingman Gateway."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from wingman_gateway import __version__
from wingman_gateway.cli import admin, daemon, discover, health, join, onion, token, tunnel


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wingman", description="Wingman Gateway command line.")
    parser.add_argument("--version", action="version", version=f"wingman {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    gateway = commands.add_parser("gateway", help="run, supervise and use a gateway")
    actions = gateway.add_subparsers(dest="action", required=True, metavar="ACTION")
    daemon.add_parsers(actions)
    join.add_parser(actions)
    token.add_parser(actions)
    health.add_parser(actions)
    discover.add_parser(actions)
    tunnel.add_parser(actions)
    onion.add_parser(actions)
    admin.add_parsers(actions)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "gateway_options", None) and args.gateway_options[0] == "--":
        args.gateway_options = args.gateway_options[1:]
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
