"""``wingman gateway onion-client NAME``: a key pair for v3 onion client authorization.

The public key is added to the gateway's ``--onion-client-auth`` file (made,
mode 0600, when missing); the private key is printed as the line a client's
tor wants in ``ClientOnionAuthDir/NAME.auth_private``, for the client alone.
A running gateway reads the file when it starts, so restart it afterwards.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from wingman_gateway.cli.helptext import HelpFormatter
from wingman_gateway.cli.home import Home
from wingman_gateway.onion.clientauth import make_client_keys
from wingman_gateway.onion.keys import KEY_FILE_NAME, OnionKeyError, load_key

CLIENTS_FILE_NAME = "onion_clients"


def onion_client(args: argparse.Namespace) -> int:
    home = Home.from_environment().root
    key_path = Path(args.onion_key or home / KEY_FILE_NAME)
    clients = Path(args.clients or home / CLIENTS_FILE_NAME)
    if not args.name.replace("-", "").replace("_", "").isalnum():
        print(f"wingman: a client name is letters, digits, - and _ only, not {args.name!r}", file=sys.stderr)
        return 2
    try:
        address = load_key(key_path).address  # made now if the gateway has not run yet
        keys = make_client_keys()
        clients.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(clients, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="ascii") as handle:
            handle.write(f"{keys.public_line}  # {args.name}\n")
    except (OSError, OnionKeyError) as error:
        print(f"wingman: {error}", file=sys.stderr)
        return 1
    print(f"added {args.name}'s public key to {clients} (start the gateway with --onion-client-auth {clients})",
          file=sys.stderr)
    print(f"give {args.name} this line, for its tor's ClientOnionAuthDir as {args.name}.auth_private:",
          file=sys.stderr)
    print(keys.private_line(address))
    return 0


def add_parser(actions: Any) -> None:
    parser = actions.add_parser(
        "onion-client", help="allow one more client to reach the onion service (v3 client authorization)",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("name", help="the client's name (a comment in the file, and its .auth_private name)")
    parser.add_argument("--onion-key", help="the gateway's onion key [$WINGMAN_HOME/" + KEY_FILE_NAME + "]")
    parser.add_argument("--clients", help="the --onion-client-auth file [$WINGMAN_HOME/" + CLIENTS_FILE_NAME + "]")
    parser.set_defaults(run=onion_client)
