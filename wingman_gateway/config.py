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

from wingman_gateway.transports.bridge import options as bridge_options
from wingman_gateway.cluster.settings import ClusterSettings, cluster_settings
from wingman_gateway.discovery.settings import DEFAULT_TAILSCALE_SOCKET, DiscoverySettings, parse_discovery
from wingman_gateway import checks
from wingman_gateway.checks import ConfigError
from wingman_gateway.history import HistorySettings
from wingman_gateway.limits import Limits
from wingman_gateway.admission import LOOPBACK, AdmissionLimits, check_networks
from wingman_gateway.onion import settings as onion_settings

DEFAULT_PORT = 3000
# "::" with IPV6_V6ONLY off (Linux's default): IPv4 and IPv6 clients alike.
DEFAULT_HOST = "::"


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
    Setting("port", "port", checks.port, None, f"TCP port, shorthand for --listen tcp:PORT [{DEFAULT_PORT}]"),
    Setting("host", "host", checks.text, None, f"interface for --port [{DEFAULT_HOST}]"),
    Setting("name", "name", checks.text, None, "gateway name reported by /health [host name]"),
    Setting("token", "authToken", checks.text, None, "shared auth token accepted at register"),
    Setting(
        "token-file", "authTokenFile", checks.text, None,
        "file holding the shared auth token (read at start and on SIGHUP; not shown in ps)",
    ),
    Setting("keyring", "keyring", checks.text, None, "key ring file (JSON) for signed tokens"),
    Setting("max-nodes", "maxNodes", checks.integer(1), 1000, "most nodes at once"),
    Setting("max-payload", "maxPayload", checks.integer(256), 1024 * 1024, "largest message, bytes"),
    Setting("max-rooms", "maxRooms", checks.integer(1), 10000, "most rooms at once"),
    Setting("max-rooms-per-node", "maxRoomsPerNode", checks.integer(1), 100, "most rooms one node joins"),
    Setting("max-name-length", "maxNameLength", checks.integer(1), 100, "longest node/room name (ids, 16 characters, are always taken)"),
    Setting(
        "max-description-length", "maxDescriptionLength", checks.integer(1), 500,
        "longest room description",
    ),
    Setting("max-depth", "maxDepth", checks.integer(2), 64, "deepest JSON nesting in a message"),
    Setting(
        "message-rate", "messageRate", checks.integer(0), 250,
        "messages a second per connection, sustained (token bucket), 0 = off",
    ),
    Setting("message-burst", "messageBurst", checks.integer(1), 500, "messages per connection at once, above the rate"),
    Setting(
        "rate-limit", "rateLimit", checks.integer(0), None,
        "older form: N messages per --rate-window, i.e. rate N/window, burst N; 0 = off",
    ),
    Setting("rate-window", "rateWindow", checks.integer(1), None, "window of --rate-limit, ms [60000]"),
    Setting(
        "max-metadata", "maxMetadata", checks.integer(2), 4096,
        "largest register metadata kept per node, bytes of JSON",
    ),
    Setting(
        "max-buffer", "maxBuffer", checks.integer(1024), 4 * 1024 * 1024,
        "unsent bytes per client before it is cut off",
    ),
    Setting("ping-interval", "pingInterval", checks.integer(10), 30000, "heartbeat ping interval, ms"),
    Setting(
        "ping-timeout", "pingTimeout", checks.integer(10), 60000,
        "drop a node silent this long, ms",
    ),
    Setting("log-level", "logLevel", checks.log_level, "info", "debug, info, warn, error"),
    Setting(
        "ports-file", "portsFile", checks.text, None,
        "write the bound listeners (endpoint, kind, host, port or path) and SSH port to this JSON file",
    ),
    Setting("discovery", "discovery", _discovery, None, "announce the gateway: mdns, tailscale or mdns,tailscale"),
    Setting("mdns-interface", "mdnsInterface", checks.text, None, "announce over mDNS on this interface only [all]"),
    Setting(
        "tailscale-socket", "tailscaleSocket", checks.text, DEFAULT_TAILSCALE_SOCKET,
        "tailscaled LocalAPI socket (--discovery tailscale)",
    ),
    Setting("ssh", "ssh", checks.text, None, "endpoint of the built-in SSH server, e.g. tcp:2222 [off]"),
    Setting(
        "ssh-host-key", "sshHostKey", checks.text, None,
        "SSH host key file, ed25519 made when absent [WINGMAN_HOME/ssh_host_ed25519_key]",
    ),
    Setting(
        "ssh-authorized-keys", "sshAuthorizedKeys", checks.text, None,
        "OpenSSH authorized_keys file: who may use the SSH server",
    ),
    Setting(
        "bridge-session-timeout", "bridgeSessionTimeout", checks.integer(100), 60000,
        "end an HTTP bridge session with no poll or stream this long, ms",
    ),
    Setting("bridge-queue", "bridgeQueue", checks.integer(1), 1000, "messages queued per HTTP bridge session"),
    Setting(
        "bridge-queue-bytes", "bridgeQueueBytes", checks.integer(1024), 4 * 1024 * 1024,
        "bytes queued per HTTP bridge session",
    ),
    Setting("bridge-heartbeat", "bridgeHeartbeat", checks.integer(100), 15000, "SSE heartbeat comment interval, ms"),
    Setting(
        "max-connections", "maxConnections", checks.integer(0), 0,
        "most open connections on all listeners, 0 = the open-files limit minus 64",
    ),
    Setting(
        "connection-reserve", "connectionReserve", checks.integer(0), 16,
        "connections kept for /health and existing bridge sessions",
    ),
    Setting(
        "max-connections-per-source", "maxConnectionsPerSource", checks.integer(1), 64,
        "most open connections from one address (IPv6: one /64)",
    ),
    Setting(
        "max-nodes-per-source", "maxNodesPerSource", checks.integer(1), 32,
        "most registered nodes from one address (IPv6: one /64)",
    ),
    Setting(
        "header-timeout", "headerTimeout", checks.integer(100), 10000,
        "time to send a complete HTTP request head, ms",
    ),
    Setting(
        "register-timeout", "registerTimeout", checks.integer(100), 30000,
        "time from connecting to registering, ms",
    ),
    Setting(
        "cluster", "cluster", checks.text, None,
        "share rooms with other gateways through Redis: redis://[USER@]HOST:PORT[/DB] or rediss:// [off]",
    ),
    Setting("cluster-ca", "clusterCa", checks.text, None, "CA file (PEM) that verifies a rediss:// server [system trust]"),
    Setting(
        "cluster-password-file", "clusterPasswordFile", checks.text, None,
        "file holding the Redis password [the REDISCLI_AUTH environment variable]",
    ),
    Setting(
        "cluster-advertise", "clusterAdvertise", checks.text, None,
        "URLs (comma list) clients reach this gateway at, as the registry lists them [the listeners]",
    ),
    Setting(
        "tor-control", "torControl", checks.text, None,
        "with --onion: tor's control endpoint, e.g. unix:/run/tor/control [launch tor]",
    ),
    Setting(
        "onion-key", "onionKey", checks.text, None,
        "onion service key file (ED25519-V3:...) [WINGMAN_HOME/onion_ed25519_key]",
    ),
    Setting(
        "onion-client-auth", "onionClientAuth", checks.text, None,
        "file of client public keys allowed to reach the onion service",
    ),
    Setting("tor-config", "torConfig", checks.text, None, "torrc file for the tor the gateway launches"),
    Setting("history-size", "historySize", checks.integer(0), 100, "messages kept per room for resuming, 0 = no history"),
    Setting("history-ttl", "historyTtl", checks.integer(1), 600000, "keep a room's messages at most this long, ms"),
    Setting("history-room-bytes", "historyRoomBytes", checks.integer(1024), 1024 * 1024, "bytes of history per room"),
    Setting(
        "history-bytes", "historyBytes", checks.integer(1024), 16 * 1024 * 1024,
        "bytes of history for all rooms together",
    ),
    Setting(
        "admin-token-file", "adminTokenFile", checks.text, None,
        "file whose first line is the admin token: turns on /api/ and /metrics on the listeners",
    ),
    Setting(
        "metrics-listen", "metricsListen", checks.text, None,
        "endpoint serving /metrics without a credential, e.g. tcp:9464:interface=127.0.0.1 [off]",
    ),
    Setting("audit-log", "auditLog", checks.text, None, "append security events as JSON lines to this file [off]"),
)

# Settings that are switches on the command line or lists, not plain values.
EXTRA_KEYS = {
    "requireAuth": checks.boolean,
    "listen": checks.endpoints,
    "bridge": checks.boolean,
    "console": checks.boolean,
    "corsOrigins": bridge_options.check_origins,
    "exemptSources": check_networks,
    "onion": checks.boolean,
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
    admission: AdmissionLimits = attrs.Factory(AdmissionLimits)
    # The HTTP bridge (/bridge/*); None when turned off.
    bridge: bridge_options.BridgeOptions | None = attrs.Factory(bridge_options.BridgeOptions)
    # --cluster: rooms shared with other gateways through Redis; None: this gateway alone.
    cluster: ClusterSettings | None = None
    auth_token_file: str | None = None
    ports_file: str | None = None
    # --onion: the first TCP listener as a Tor onion service; None when off.
    onion: onion_settings.OnionSettings | None = None
    # The web console at /console/ (--no-console turns it off).
    console: bool = True
    # Room history for resuming (--history-size 0: none).
    history: HistorySettings = attrs.Factory(HistorySettings)
    # Operations: the admin credential's file, the private /metrics endpoint, the audit log.
    admin_token_file: str | None = None
    metrics_listen: str | None = None
    audit_log: str | None = None

    @property
    def metrics(self) -> bool:
        """Metrics are kept when something can read them."""
        return self.admin_token_file is not None or self.metrics_listen is not None


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
    if values["maxConnections"] and values["connectionReserve"] >= values["maxConnections"]:
        raise ConfigError("connectionReserve: must be less than maxConnections")

    rate, burst = _message_rate(values)
    limits = Limits(
        max_payload=values["maxPayload"],
        max_name_length=values["maxNameLength"],
        max_description_length=values["maxDescriptionLength"],
        max_depth=values["maxDepth"],
        max_nodes=values["maxNodes"],
        max_rooms=values["maxRooms"],
        max_rooms_per_node=values["maxRoomsPerNode"],
        message_rate=rate,
        message_burst=burst,
        max_metadata=values["maxMetadata"],
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
        admission=_admission(values, flags, file_values),
        bridge=bridge_options.from_settings(values, flags, file_values),
        cluster=cluster_settings(
            values["cluster"], values["clusterCa"], values["clusterPasswordFile"], values["clusterAdvertise"]
        ),
        auth_token_file=values["authTokenFile"],
        ports_file=values["portsFile"],
        onion=onion_settings.from_settings(values, flags, file_values),
        console=not flags.get("no-console") and file_values.get("console", True) is not False,
        history=HistorySettings(
            size=values["historySize"],
            ttl=values["historyTtl"] / 1000,
            room_bytes=values["historyRoomBytes"],
            total_bytes=values["historyBytes"],
        ),
        admin_token_file=values["adminTokenFile"],
        metrics_listen=values["metricsListen"],
        audit_log=values["auditLog"],
    )


def _admission(values: dict[str, Any], flags: dict[str, Any], file_values: dict[str, Any]) -> AdmissionLimits:
    """Caps and deadlines at the edge; ``--exempt-source`` (repeatable) replaces the file's list."""
    exempt = file_values.get("exemptSources", LOOPBACK)
    if flags.get("exempt-source"):
        exempt = check_networks("--exempt-source", ",".join(flags["exempt-source"]))
    return AdmissionLimits(
        max_connections=values["maxConnections"],
        reserve=values["connectionReserve"],
        max_connections_per_source=values["maxConnectionsPerSource"],
        max_nodes_per_source=values["maxNodesPerSource"],
        exempt=exempt,
        header_timeout=values["headerTimeout"] / 1000,
        register_timeout=values["registerTimeout"] / 1000,
    )


def _message_rate(values: dict[str, Any]) -> tuple[float, int]:
    """The token bucket's rate and burst, from the new settings or the older pair.

    ``rateLimit N`` with ``rateWindow W`` (ms) means N messages per window:
    a bucket of N tokens refilled at N/W a second.
    """
    limit, window = values["rateLimit"], values["rateWindow"]
    if limit is None:
        if window is not None:
            raise ConfigError("rateWindow: needs rateLimit")
        return float(values["messageRate"]), values["messageBurst"]
    if window is None:
        window = 60000
    if limit == 0:
        return 0.0, 1
    return limit * 1000 / window, limit


def _merge_discovery(value: Any, flags: dict[str, Any], file_values: dict[str, Any]) -> DiscoverySettings:
    """``--discovery`` picks the methods; the file's name and tags still apply."""
    in_file = file_values.get("discovery")
    if value is None:
        return DiscoverySettings()
    if flags.get("discovery") is not None and isinstance(in_file, DiscoverySettings):
        return attrs.evolve(in_file, methods=value.methods)
    assert isinstance(value, DiscoverySettings)
    return value


def tcp_endpoint(port: int, host: str) -> str:
    """``tcp:`` for an IPv4 address or name, ``tcp6:`` for an IPv6 address (``::`` is dual-stack)."""
    kind = "tcp6" if ":" in host else "tcp"
    return f"{kind}:{port}:interface={quoteStringArgument(host)}"
