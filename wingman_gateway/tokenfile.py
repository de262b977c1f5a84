"""``--token-file``: the shared token read from a file, so it never shows in ``ps``."""

from __future__ import annotations

from wingman_gateway.checks import ConfigError


def read_token_file(path: str) -> str:
    """The token in ``path`` (surrounding white space removed); ConfigError naming the file if unusable."""
    try:
        with open(path, encoding="utf-8") as handle:
            token = handle.read().strip()
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise ConfigError(f"authTokenFile: cannot read {path}: {reason}") from None
    if not token:
        raise ConfigError(f"authTokenFile: {path} is empty")
    if "\n" in token:
        raise ConfigError(f"authTokenFile: {path} must hold one line, the token")
    return token
