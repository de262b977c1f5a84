"""``--cluster redis://[user@]HOST:PORT[/DB]``: where the cluster's Redis is.

The password never comes from the command line (it would show in ``ps``
and in logs): it is read from ``--cluster-password-file`` or from the
``REDISCLI_AUTH`` environment variable, as ``redis-cli`` does.
"""

from __future__ import annotations

import os
from typing import Mapping
from urllib.parse import unquote, urlsplit

import attrs

from wingman_gateway.checks import ConfigError

DEFAULT_PORT = 6379
PASSWORD_VARIABLE = "REDISCLI_AUTH"


@attrs.frozen
class ClusterSettings:
    """A checked ``--cluster`` URL and its credentials."""

    host: str
    port: int
    db: int = 0
    tls: bool = False
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    ca_file: str | None = None
    # URLs clients use to reach this gateway, as the registry lists them;
    # empty: made from the bound listeners.
    advertise: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        """The URL without any secret, for logs and ``/health``."""
        scheme = "rediss" if self.tls else "redis"
        user = f"{self.username}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{user}{host}:{self.port}/{self.db}"


def parse_url(key: str, text: str) -> ClusterSettings:
    """A ``redis://`` or ``rediss://`` URL; a password in it is refused."""
    if not isinstance(text, str) or not text:
        raise ConfigError(f"{key}: expected a redis:// or rediss:// URL, got {text!r}")
    parts = urlsplit(text)
    if parts.scheme not in ("redis", "rediss"):
        raise ConfigError(f"{key}: expected a redis:// or rediss:// URL, got scheme {parts.scheme!r}")
    if parts.password is not None:
        raise ConfigError(
            f"{key}: a password in the URL would show in the process list and logs; "
            f"use --cluster-password-file or the {PASSWORD_VARIABLE} environment variable"
        )
    if not parts.hostname:
        raise ConfigError(f"{key}: the URL names no host")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ConfigError(f"{key}: bad port in the URL") from None
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ConfigError(f"{key}: the URL's path must be a database number, got {path!r}")
    if parts.query or parts.fragment:
        raise ConfigError(f"{key}: the URL takes no query or fragment")
    return ClusterSettings(
        host=parts.hostname,
        port=port,
        db=int(path) if path else 0,
        tls=parts.scheme == "rediss",
        username=unquote(parts.username) if parts.username else None,
    )


def read_password(path: str | None, environ: Mapping[str, str]) -> str | None:
    """The password from the file (first line), else from ``REDISCLI_AUTH``."""
    if path is not None:
        try:
            with open(path, encoding="utf-8") as handle:
                line = handle.readline().rstrip("\r\n")
        except OSError as error:
            raise ConfigError(f"clusterPasswordFile: cannot read {path}: {error.strerror}") from None
        if not line:
            raise ConfigError(f"clusterPasswordFile: {path} is empty")
        return line
    return environ.get(PASSWORD_VARIABLE) or None


def cluster_settings(
    url: str | None,
    ca_file: str | None,
    password_file: str | None,
    advertise: str | None,
    environ: Mapping[str, str] = os.environ,
) -> ClusterSettings | None:
    """Everything ``--cluster`` and its companions say, or None without ``--cluster``."""
    if url is None:
        for name, value in (("clusterCa", ca_file), ("clusterPasswordFile", password_file),
                            ("clusterAdvertise", advertise)):
            if value is not None:
                raise ConfigError(f"{name}: only makes sense with --cluster")
        return None
    settings = parse_url("cluster", url)
    if ca_file is not None:
        if not settings.tls:
            raise ConfigError("clusterCa: a CA file needs a rediss:// URL")
        if not os.path.isfile(ca_file):
            raise ConfigError(f"clusterCa: no such file {ca_file}")
    urls = tuple(u.strip() for u in (advertise or "").split(",") if u.strip())
    for advertised in urls:
        if urlsplit(advertised).scheme not in ("ws", "wss", "http", "https"):
            raise ConfigError(f"clusterAdvertise: expected ws://, wss://, http:// or https:// URLs, got {advertised!r}")
    return attrs.evolve(
        settings,
        password=read_password(password_file, environ),
        ca_file=ca_file,
        advertise=urls,
    )
