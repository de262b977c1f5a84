"""``wingman gateway token``: sign tokens, rotate and retire signing keys."""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Any

from twisted.internet.task import Clock

from wingman_gateway.auth import KeyRing
from wingman_gateway.cli.helptext import HelpFormatter
from wingman_gateway.cli.home import Home

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw]?)$")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def default_keyring() -> Path:
    return Home.from_environment().keyring


def parse_duration(text: str) -> float:
    """'30d', '12h', '90m', '45s' or plain seconds."""
    match = _DURATION.match(text.strip())
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use e.g. 30d, 12h, 90m)")
    return float(match.group(1)) * _SECONDS[match.group(2)]


def _wall_clock() -> Clock:
    """Key ring operations run outside a reactor; they need only the time."""
    clock = Clock()
    clock.advance(time.time())
    return clock


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def token_command(args: argparse.Namespace) -> int:
    if not (args.generate or args.rotate or args.retire or args.list):
        print("wingman: gateway token: give at least one of --generate, --rotate, --retire, --list",
              file=sys.stderr)
        return 2
    path = Path(args.keyring)
    clock = _wall_clock()
    try:
        ring = KeyRing.open(path, clock, create=args.generate or args.rotate)
    except FileNotFoundError:
        print(f"wingman: no key ring at {path} (create one with --generate)", file=sys.stderr)
        return 1
    except ValueError as error:
        print(f"wingman: {error}", file=sys.stderr)
        return 1
    if args.rotate:
        key_id = ring.rotate()
        print(f"new signing key {key_id}; tokens signed by older keys stay valid until retired")
    if args.retire:
        try:
            ring.retire(args.retire)
        except ValueError as error:
            print(f"wingman: {error}", file=sys.stderr)
            return 1
        print(f"retired key {args.retire}")
    if args.generate:
        rooms = [r.strip() for r in args.rooms.split(",") if r.strip()] if args.rooms else None
        print(ring.sign(args.subject, args.ttl, rooms))
    if args.list:
        now = clock.seconds()
        for key in ring.keys():
            marker = " (active)" if key.active else ""
            print(f"{key.id}  age {_age(now - key.created)}{marker}")
    return 0


def add_parser(actions: Any) -> None:
    token = actions.add_parser(
        "token", help="sign tokens and manage the signing key ring",
        formatter_class=HelpFormatter,
    )
    what = token.add_argument_group("actions (at least one)")
    what.add_argument("--generate", action="store_true", help="print a signed token")
    what.add_argument("--rotate", action="store_true", help="add a new signing key")
    what.add_argument("--retire", metavar="KEY_ID", help="remove a key; its tokens stop working")
    what.add_argument("--list", action="store_true", help="list key ids and ages")
    token.add_argument("--keyring", default=str(default_keyring()), help="key ring file")
    token.add_argument("--subject", default="wingman", help="who the token is for")
    token.add_argument("--ttl", type=parse_duration, default="30d",
                       help="lifetime, e.g. 30d, 12h, 90m")
    token.add_argument("--rooms", default="",
                       help="comma-separated rooms the token may join; empty: any")
    token.set_defaults(run=token_command)
