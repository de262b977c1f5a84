"""The built-in SSH server: ``--ssh ENDPOINT`` adds it to the gateway's MultiService."""

from __future__ import annotations

from typing import Any, Callable

from wingman_gateway.checks import ConfigError
from wingman_gateway.config import GatewayConfig
from wingman_gateway.logs import get_logger
from wingman_gateway.router import Router
from wingman_gateway.listener import Listener
from wingman_gateway.transports.ssh.keys import (
    AuthorizedKeysFile,
    KeyFileError,
    default_host_key_path,
    fingerprint,
    load_host_key,
)
from wingman_gateway.transports.ssh.server import GatewaySSHFactory

log = get_logger("wingman_gateway.ssh")


class SSHListener(Listener):
    """The SSH endpoint; announced apart from the WebSocket listeners."""

    announce = "wingman-gateway SSH server on {endpoint} ({address})"
    fingerprint: str | None = None  # the host key's SHA256 fingerprint (for --ports-file)

    def __init__(self, description: str, factory: Any, reactor: Any) -> None:
        super().__init__(description, factory, reactor)
        self.setName(f"ssh {description}")


def ssh_listener(config: GatewayConfig, router: Router, listening: Callable[[], list[Any]],
                 reactor: Any) -> SSHListener:
    """The SSH server for ``config.ssh``; forwarding reaches only the addresses
    ``listening`` returns (the gateway's own bound listeners)."""
    assert config.ssh is not None and config.ssh_authorized_keys is not None
    try:
        host_key = load_host_key(config.ssh_host_key or default_host_key_path())
        keyfile = AuthorizedKeysFile(config.ssh_authorized_keys)
    except KeyFileError as error:
        raise ConfigError(str(error))
    log.info("SSH host key {fingerprint}; {count} authorized keys",
             fingerprint=fingerprint(host_key), count=len(keyfile.entries))

    factory = GatewaySSHFactory(router, host_key, keyfile, listening, reactor)
    listener = SSHListener(config.ssh, factory, reactor)
    listener.fingerprint = fingerprint(host_key)
    return listener
