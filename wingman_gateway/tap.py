"""``twistd wingman-gateway``: command-line options and ``makeService``."""

from __future__ import annotations

import os
import sys
from typing import Any

import twisted
from twisted.python import usage

from wingman_gateway import __version__, environment, logs
from wingman_gateway.checks import ConfigError
from wingman_gateway.config import SETTINGS, build, load_file
from wingman_gateway.listener import ListenError
from wingman_gateway.service import GatewayService


def _help(setting: Any) -> str:
    if setting.default is None:
        return str(setting.help)
    return f"{setting.help} [default: {setting.default}]"


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Run the Wingman Gateway: nodes connect over WebSocket at /ws (or HTTP at /bridge/), register, "
        "join rooms and exchange messages. Every option can also be given as a WINGMAN_* environment "
        "variable (--max-nodes: WINGMAN_MAX_NODES). Command-line options override the environment, "
        "which overrides --config."
    )
    optFlags = [
        ["auth", None, "require a token at register (shared --token and/or --keyring)"],
        ["no-bridge", None, "turn off the HTTP bridge (/bridge/send, /bridge/poll, /bridge/sse)"],
        ["no-console", None, "turn off the web console (/console/)"],
        ["onion", None, "publish the first TCP listener as a Tor onion service (see --tor-control)"],
    ]
    optParameters = [["config", "c", None, "JSON config file (keys as in the README's Config file section)"]] + [
        [s.flag, None, None, _help(s)] for s in SETTINGS
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["cors-origin"] = []
        self["exempt-source"] = []

    def opt_listen(self, description: str) -> None:
        """listener endpoint, repeatable; the default takes IPv4 and IPv6 [default: tcp6:3000:interface=\\:\\:]"""
        self["listen"].append(description)

    def opt_cors_origin(self, origin: str) -> None:
        """origin (scheme://host[:port]) whose pages may use the HTTP bridge, repeatable [none]"""
        self["cors-origin"].append(origin)

    def opt_exempt_source(self, network: str) -> None:
        """network (CIDR) not held to the per-source caps, repeatable; none for none [127.0.0.0/8, ::1]"""
        self["exempt-source"].append(network)

    def opt_version(self) -> None:
        """print the gateway's and Twisted's versions and exit"""
        print(f"wingman-gateway {__version__} (Twisted {twisted.__version__})")
        raise SystemExit(0)

    def postOptions(self) -> None:
        try:
            environment.apply(self, os.environ)
            file_values = load_file(self["config"]) if self["config"] else {}
            self.config = build(file_values, dict(self), self["listen"], bool(self["auth"]))
        except ConfigError as error:
            # One line naming the setting, not the whole usage text.
            raise SystemExit(f"wingman-gateway: {error}")


def makeService(options: Options, reactor: Any = None) -> GatewayService:
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    config = options.config
    logs.set_level(config.log_level)
    _short_listen_errors()
    try:
        return GatewayService(config, reactor)
    except ConfigError as error:
        raise SystemExit(f"wingman-gateway: {error}")


def _short_listen_errors() -> None:
    """A listener that cannot bind ends twistd with its one-line reason, not a traceback.

    twistd lets the exception out of ``privilegedStartService`` (a daemonizing
    twistd first reports it to its parent and removes the pid file), and
    Python would print the traceback.
    """
    previous = sys.excepthook

    def hook(kind: type[BaseException], value: BaseException, traceback: Any) -> None:
        if isinstance(value, ListenError):
            print(value, file=sys.stderr)
        else:
            previous(kind, value, traceback)

    sys.excepthook = hook
