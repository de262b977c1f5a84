"""Gateway settings from a JSON config file and the command line.

One table lists every setting once: its command-line flag, its config-file
key, its type and default. The command line overrides the file. Times are
milliseconds, as in the config file format.
"""

from __future__ import annotations

import json
import socket
from typing import Any, Callable

import attrs
from twisted.internet.endpoints import quoteStringArgument

from wingman_gateway.bridge import options as bridge_options
from wingman_gateway.discovery.settings import DEFAULT_TAILSCALE_SOCKET, DiscoverySettings, parse_discovery
from wingman_gateway.limits import Limits

DEFAULT_PORT = 3000
# "::" with IPV6_V6ONLY off (Linux's default): IPv4 and IPv6 clients alike.
DEFAULT_HOST = "::"
LOG_LEVELS = ("debug", "info", "warn", "error", "critical")


class ConfigError(ValueError):
    """A setting has a bad value; the message names it."""


def _integer(minimum: int) -> Callable[[str, Any], int]:
    def check(key: str, value: Any) -> int:
        if isinstance(value, str):
            try:
                value = int(value)
            except ValueError:
                raise ConfigError(f"{key}: expected a whole number, got {value!r}")
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected a whole number, got {value!r}")
        if value < minimum:
            raise ConfigError(f"{key}: must be at least {minimum}, got {value}")
        return value

    return check


def _port(key: str, value: Any) -> int:
    port = _integer(0)(key, value)
    if port > 65535:
        raise ConfigError(f"{key}: must be a TCP port (0-65535), got {port}")
    return port


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}: expected a non-empty string, got {value!r}")
    return value


def _boolean(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    return value


def _endpoints(key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(
        isinstance(v, str) and v for v in value
    ):
        raise ConfigError(f"{key}: expected a list of endpoint strings, got {value!r}")
    return tuple(value)


def _log_level(key: str, value: Any) -> str:
    if value not in LOG_LEVELS:
        raise ConfigError(f"{key}: expected one of {', '.join(LOG_LEVELS)}, got {value!r}")
    return value  # type: ignore[no-any-return]


def _discovery(key: str, value: Any) -> DiscoverySettings:
    try:
        return parse_discovery(value)
    except ValueError as error:
        raise ConfigError(f"{key}: {error}")


@attrs.frozen
class Setting:
    """One setting: flag, config key, checker, default and help."""

    flag: str
    key: str
    check: Callable[[str, Any], Any]
    default: Any
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("port", "port", _port, None, f"TCP port, shorthand for --listen tcp:PORT [{DEFAULT_PORT}]"),
    Setting("host", "host", _text, None, f"interface for --port [{DEFAULT_HOST}]"),
    Setting("name", "name", _text, None, "gateway name reported by /health [host name]"),
    Setting("token", "authToken", _text, None, "shared auth token accepted at register"),
    Setting(
        "token-file", "authTokenFile", _text, None,
        "file holding the shared auth token (read at start and on SIGHUP; not shown in ps)",
    ),
    Setting("keyring", "keyring", _text, None, "key ring file (JSON) for signed tokens"),
    Setting("max-nodes", "maxNodes", _integer(1), 1000, "most nodes at once"),
    Setting("max-payload", "maxPayload", _integer(256), 1024 * 1024, "largest message, bytes"),
    Setting("max-rooms", "maxRooms", _integer(1), 10000, "most rooms at once"),
    Setting("max-rooms-per-node", "maxRoomsPerNode", _integer(1), 100, "most rooms one node joins"),
    Setting("max-name-length", "maxNameLength", _integer(1), 100, "longest node/room name"),
    Setting(
        "max-description-length", "maxDescriptionLength", _integer(1), 500,
        "longest room description",
    ),
    Setting("max-depth", "maxDepth", _integer(2), 64, "deepest JSON nesting in a message"),
    Setting("rate-limit", "rateLimit", _integer(0), 100, "messages per window per node, 0 = off"),
    Setting("rate-window", "rateWindow", _integer(1), 60000, "rate limit window, ms"),
    Setting(
        "max-buffer", "maxBuffer", _integer(1024), 4 * 1024 * 1024,
        "unsent bytes per client before it is cut off",
    ),
    Setting("ping-interval", "pingInterval", _integer(10), 30000, "heartbeat ping interval, ms"),
    Setting(
        "ping-timeout", "pingTimeout", _integer(10), 60000,
        "drop a node silent this long, ms",
    ),
    Setting("log-level", "logLevel", _log_level, "info", "debug, info, warn, error"),
    Setting(
        "ports-file", "portsFile", _text, None,
        "write the bound listeners (endpoint, kind, host, port or path) and SSH port to this JSON file",
    ),
    Setting("discovery", "discovery", _discovery, None, "announce the gateway: mdns, tailscale or mdns,tailscale"),
    Setting("mdns-interface", "mdnsInterface", _text, None, "announce over mDNS on this interface only [all]"),
    Setting(
        "tailscale-socket", "tailscaleSocket", _text, DEFAULT_TAILSCALE_SOCKET,
        "tailscaled LocalAPI socket (--discovery tailscale)",
    ),
    Setting("ssh", "ssh", _text, None, "endpoint of the built-in SSH server, e.g. tcp:2222 [off]"),
    Setting(
        "ssh-host-key", "sshHostKey", _text, None,
        "SSH host key file, ed25519 made when absent [WINGMAN_HOME/ssh_host_ed25519_key]",
    ),
    Setting(
        "ssh-authorized-keys", "sshAuthorizedKeys", _text, None,
        "OpenSSH authorized_keys file: who may use the SSH server",
    ),
    Setting(
        "bridge-session-timeout", "bridgeSessionTimeout", _integer(100), 60000,
        "end an HTTP bridge session with no poll or stream this long, ms",
    ),
    Setting("bridge-queue", "bridgeQueue", _integer(1), 1000, "messages queued per HTTP bridge session"),
    Setting(
        "bridge-queue-bytes", "bridgeQueueBytes", _integer(1024), 4 * 1024 * 1024,
        "bytes queued per HTTP bridge session",
    ),
    Setting("bridge-heartbeat", "bridgeHeartbeat", _integer(100), 15000, "SSE heartbeat comment interval, ms"),
)

# Settings that are switches on the command line or lists, not plain values.
EXTRA_KEYS = {
    "requireAuth": _boolean,
    "listen": _endpoints,
    "bridge": _boolean,
    "corsOrigins": bridge_options.check_origins,
}


@attrs.frozen
class GatewayConfig:
    """Everything ``makeService`` needs, validated."""

    listen: tuple[str, ...]
    name: str
    require_auth: bool
    auth_token: str | None
    keyring: str | None
    log_level: str
    limits: Limits
    discovery: DiscoverySettings = attrs.Factory(DiscoverySettings)
    mdns_interface: str | None = None
    tailscale_socket: str = DEFAULT_TAILSCALE_SOCKET
    ssh: str | None = None
    ssh_host_key: str | None = None
    ssh_authorized_keys: str | None = None
    # The HTTP bridge (/bridge/*); None when turned off.
    bridge: bridge_options.BridgeOptions | None = attrs.Factory(bridge_options.BridgeOptions)
    auth_token_file: str | None = None
    ports_file: str | None = None


def load_file(path: str) -> dict[str, Any]:
    """Read a config file; unknown keys and bad values are refused by key."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}")
    except ValueError as error:
        raise ConfigError(f"config file {path} is not valid JSON: {error}")
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a JSON object")
    known = {s.key: s.check for s in SETTINGS} | EXTRA_KEYS
    values = {}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"{key}: unknown config key in {path} (known: {', '.join(sorted(known))})")
        values[key] = known[key](key, value)
    return values


def build(
    file_values: dict[str, Any],
    flags: dict[str, Any],
    listen: list[str],
    require_auth: bool,
) -> GatewayConfig:
    """Merge file values and command-line flags (flags win) and check them."""
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        given = flags.get(setting.flag)
        if given is not None:
            values[setting.key] = setting.check("--" + setting.flag, given)
        elif setting.key in file_values:
            values[setting.key] = file_values[setting.key]
        else:
            values[setting.key] = setting.default

    endpoints = list(listen) or list(file_values.get("listen", ()))
    for endpoint in endpoints:
        if endpoints.count(endpoint) > 1:
            raise ConfigError(f"listen: endpoint {endpoint!r} is given more than once")
    if values["port"] is not None or values["host"] is not None:
        endpoints.append(
            tcp_endpoint(values["port"] if values["port"] is not None else DEFAULT_PORT,
                         values["host"] or DEFAULT_HOST)
        )
    if not endpoints:
        endpoints.append(tcp_endpoint(DEFAULT_PORT, DEFAULT_HOST))

    auth = require_auth or file_values.get("requireAuth", False)
    if values["authToken"] is not None and values["authTokenFile"] is not None:
        raise ConfigError("authTokenFile: give the shared token or a token file, not both")
    if auth and values["authToken"] is None and values["authTokenFile"] is None and values["keyring"] is None:
        raise ConfigError("requireAuth: auth is on but neither a token nor a keyring is given")
    if values["ssh"] is not None and values["sshAuthorizedKeys"] is None:
        raise ConfigError("sshAuthorizedKeys: the SSH server needs --ssh-authorized-keys FILE")
    if values["pingTimeout"] <= values["pingInterval"]:
        raise ConfigError("pingTimeout: must be longer than pingInterval")

    limits = Limits(
        max_payload=values["maxPayload"],
        max_name_length=values["maxNameLength"],
        max_description_length=values["maxDescriptionLength"],
        max_depth=values["maxDepth"],
        max_nodes=values["maxNodes"],
        max_rooms=values["maxRooms"],
        max_rooms_per_node=values["maxRoomsPerNode"],
        rate_limit=values["rateLimit"],
        rate_window=values["rateWindow"] / 1000,
        max_buffer=values["maxBuffer"],
        ping_interval=values["pingInterval"] / 1000,
        ping_timeout=values["pingTimeout"] / 1000,
    )
    return GatewayConfig(
        listen=tuple(endpoints),
        name=values["name"] or socket.gethostname(),
        require_auth=bool(auth),
        auth_token=values["authToken"],
        keyring=values["keyring"],
        log_level=values["logLevel"],
        limits=limits,
        discovery=_merge_discovery(values["discovery"], flags, file_values),
        mdns_interface=values["mdnsInterface"],
        tailscale_socket=values["tailscaleSocket"],
        ssh=values["ssh"],
        ssh_host_key=values["sshHostKey"],
        ssh_authorized_keys=values["sshAuthorizedKeys"],
        bridge=bridge_options.from_settings(values, flags, file_values),
        auth_token_file=values["authTokenFile"],
        ports_file=values["portsFile"],
    )


def _merge_discovery(value: Any, flags: dict[str, Any], file_values: dict[str, Any]) -> DiscoverySettings:
    """``--discovery`` picks the methods; the file's name and tags still apply."""
    in_file = file_values.get("discovery")
    if value is None:
        return DiscoverySettings()
    if flags.get("discovery") is not None and isinstance(in_file, DiscoverySettings):
        return attrs.evolve(in_file, methods=value.methods)
    return value  # type: ignore[no-any-return]


def tcp_endpoint(port: int, host: str) -> str:
    """``tcp:`` for an IPv4 address or name, ``tcp6:`` for an IPv6 address (``::`` is dual-stack)."""
    kind = "tcp6" if ":" in host else "tcp"
    return f"{kind}:{port}:interface={quoteStringArgument(host)}"


def address_text(address: Any) -> str:
    """``host:port`` of a listening address (``[v6]:port``; the path of a Unix socket)."""
    host, number = getattr(address, "host", None), getattr(address, "port", None)
    if host is None or number is None:
        return str(getattr(address, "name", address))
    return f"[{host}]:{number}" if ":" in host else f"{host}:{number}"
