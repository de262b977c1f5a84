"""The onion service's settings, in one immutable value."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import attrs

from wingman_gateway.onion.keys import default_key_path


@attrs.frozen
class OnionSettings:
    """``--onion`` and the options around it, as plain values."""

    key_path: str
    control: str | None = None  # a Twisted client endpoint string; None: launch tor
    client_auth: str | None = None  # file of client public keys (v3 client authorization)
    tor_config: str | None = None  # torrc for a launched tor
    data_directory: str = ""  # a launched tor's DataDirectory


def from_settings(values: dict[str, Any], flags: dict[str, Any], file_values: dict[str, Any]) -> OnionSettings | None:
    """The onion settings from checked settings; None unless ``--onion`` (or ``"onion": true``)."""
    from wingman_gateway.checks import ConfigError

    if not (flags.get("onion") or file_values.get("onion", False)):
        return None
    key_path = os.path.abspath(values["onionKey"] or default_key_path())
    torrc = values["torConfig"] and os.path.abspath(values["torConfig"])  # tor's working directory differs
    if torrc is not None and not os.path.isfile(torrc):
        raise ConfigError(f"torConfig: no such file {torrc!r}")
    if torrc is not None and values["torControl"] is not None:
        raise ConfigError("torConfig: only for the tor the gateway launches (not with torControl)")
    return OnionSettings(
        key_path=key_path,
        control=values["torControl"],
        client_auth=values["onionClientAuth"],
        tor_config=torrc,
        data_directory=str(Path(key_path).parent / "tor"),
    )
