"""``twistd wingman-gateway``: command-line options and ``makeService``."""

from __future__ import annotations

from typing import Any

from twisted.python import usage

from wingman_gateway import logs
from wingman_gateway.config import SETTINGS, ConfigError, build, load_file
from wingman_gateway.service import GatewayService


def _help(setting: Any) -> str:
    if setting.default is None:
        return setting.help
    return f"{setting.help} [default: {setting.default}]"


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Run the Wingman Gateway: nodes connect over WebSocket at /ws (or HTTP at /bridge/), register, "
        "join rooms and exchange messages. Command-line options override --config."
    )
    optFlags = [
        ["auth", None, "require a token at register (shared --token and/or --keyring)"],
        ["no-bridge", None, "turn off the HTTP bridge (/bridge/send, /bridge/poll, /bridge/sse)"],
    ]
    optParameters = [["config", "c", None, "JSON config file (PRD keys plus ours)"]] + [
        [s.flag, None, None, _help(s)] for s in SETTINGS
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["cors-origin"] = []
        self["exempt-source"] = []

    def opt_listen(self, description: str) -> None:
        """listener endpoint, repeatable [default: tcp:3000:interface=0.0.0.0]"""
        self["listen"].append(description)

    def opt_cors_origin(self, origin: str) -> None:
        """origin (scheme://host[:port]) whose pages may use the HTTP bridge, repeatable [none]"""
        self["cors-origin"].append(origin)

    def opt_exempt_source(self, network: str) -> None:
        """network (CIDR) not held to the per-source caps, repeatable; none for none [127.0.0.0/8, ::1]"""
        self["exempt-source"].append(network)

    def postOptions(self) -> None:
        try:
            file_values = load_file(self["config"]) if self["config"] else {}
            self.config = build(file_values, dict(self), self["listen"], bool(self["auth"]))
        except ConfigError as error:
            raise usage.UsageError(str(error))


def makeService(options: Options, reactor: Any = None) -> GatewayService:
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    config = options.config
    logs.set_level(config.log_level)
    try:
        return GatewayService(config, reactor)
    except ConfigError as error:
        raise SystemExit(f"wingman-gateway: {error}")
