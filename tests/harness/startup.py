"""Why the gateway refuses a configuration, asked of ``tap.Options`` and
``makeService`` in process (no twistd spawned per bad configuration)."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.python import usage

from wingman_gateway.tap import Options, makeService


def refusal(args: list[str]) -> str:
    """Why the gateway refuses to start with ``args`` (options, then the service)."""
    options = Options()
    try:
        options.parseOptions(args)
        makeService(options, Clock())
    except usage.UsageError as error:
        return str(error)
    except SystemExit as exit:
        return str(exit.code)
    raise AssertionError(f"{args} were accepted")
