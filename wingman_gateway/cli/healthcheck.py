"""``python -m wingman_gateway.cli.healthcheck``: the container's HEALTHCHECK.

It reads the same configuration the gateway reads (``WINGMAN_*`` variables,
``WINGMAN_CONFIG``, and any gateway options given to it), finds the first
TCP (or else TLS) listener and asks its ``/health``. Exit status 0 means
healthy, 1 unhealthy or unreachable, as ``HEALTHCHECK`` expects.
"""

from __future__ import annotations

import re
import sys
from typing import Any, Sequence

from twisted.python import usage

from wingman_gateway.cli.health import HealthError, describe, fetch_health
from wingman_gateway.cli.runner import run_async

_SCHEMES = {"tcp": "http", "tcp6": "http", "ssl": "https"}
_ANY = ("", "0.0.0.0", "::")


def _fields(endpoint: str) -> tuple[list[str], dict[str, str]]:
    """An endpoint string's positional and ``key=value`` fields (``\\:`` escapes a colon)."""
    positional, named = [], {}
    for field in re.split(r"(?<!\\):", endpoint):
        field = field.replace("\\:", ":")
        key, equals, value = field.partition("=")
        if equals:
            named[key] = value
        else:
            positional.append(field)
    return positional, named


def health_url(endpoints: Sequence[str]) -> str | None:
    """The /health URL of the first plain TCP listener, else the first TLS one."""
    for wanted in ("http", "https"):
        for endpoint in endpoints:
            positional, named = _fields(endpoint)
            kind = positional[0] if positional else ""
            if _SCHEMES.get(kind) != wanted:
                continue
            port = named.get("port") or (positional[1] if len(positional) > 1 else "")
            if not port.isdigit():
                continue
            host = named.get("interface", "")
            if host in _ANY:
                host = "::1" if kind == "tcp6" or host == "::" else "127.0.0.1"
            if ":" in host:
                host = f"[{host}]"
            return f"{wanted}://{host}:{port}/health"
    return None


async def check(reactor: Any, url: str, timeout: float) -> int:
    try:
        report = await fetch_health(reactor, url, timeout)
    except HealthError as error:
        print(f"unhealthy: {error}")
        return 1
    print(describe(report))
    return 0 if report.get("status") == "healthy" else 1


def main(argv: Sequence[str] | None = None, timeout: float = 5.0) -> int:
    from wingman_gateway.tap import Options

    options = Options()
    try:
        options.parseOptions(list(sys.argv[1:] if argv is None else argv))
    except usage.UsageError as error:
        print(f"unhealthy: bad configuration: {error}")
        return 1
    except SystemExit as stopped:  # a refused setting: one line naming it
        print(f"unhealthy: bad configuration: {str(stopped.code).removeprefix('wingman-gateway: ')}")
        return 1
    url = health_url(options.config.listen)
    if url is None:
        print(f"unhealthy: no TCP or TLS listener to check among {', '.join(options.config.listen)}")
        return 1
    return run_async(check, url, timeout)


if __name__ == "__main__":
    raise SystemExit(main())
