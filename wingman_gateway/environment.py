"""Gateway options from ``WINGMAN_*`` environment variables.

Every option of ``twistd wingman-gateway`` (the settings table, the switches
and the repeatable options alike) can also come from the environment, named
after its flag: ``--max-nodes`` is ``WINGMAN_MAX_NODES``, ``--listen`` is
``WINGMAN_LISTEN``. The names are derived from the options themselves, so an
option added later has its variable at once. Precedence: the command line,
then the environment, then the config file, then the default. This is how a
container is configured.
"""

from __future__ import annotations

from typing import Any, Mapping

from twisted.python import usage

from wingman_gateway.checks import ConfigError
from wingman_gateway.config import SETTINGS
from wingman_gateway.logs import get_logger

log = get_logger("wingman_gateway.environment")

PREFIX = "WINGMAN_"
# Variables of the gateway that are not options.
OTHERS = frozenset({"WINGMAN_HOME"})
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
# --help and --version come from twisted.python.usage, not from the gateway.
_BUILTIN = frozenset(name[4:].replace("_", "-") for name in dir(usage.Options) if name.startswith("opt_"))


def variable(flag: str) -> str:
    """The environment variable of a command-line flag: ``max-nodes`` -> ``WINGMAN_MAX_NODES``."""
    return PREFIX + flag.upper().replace("-", "_")


def variables(options: usage.Options) -> dict[str, str]:
    """Every option's variable, mapped to its flag."""
    flags = (long.rstrip("=") for long in options.longOpt)
    return {variable(flag): flag for flag in flags if flag not in _BUILTIN}


def switch(name: str, text: str) -> bool:
    """A switch's value: true/false, yes/no, on/off or 1/0."""
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name}: expected true or false, got {text!r}")


def apply(options: usage.Options, environ: Mapping[str, str]) -> None:
    """Fill every option not given on the command line from its variable.

    An empty variable counts as unset; a ``WINGMAN_*`` variable that names
    no option is logged as ignored (a typo would otherwise pass unseen). A
    repeatable option (``--listen``,
    ``--cors-origin``) takes a list separated by white space. Values of the
    settings table are checked here, so an error names the variable.
    """
    checks = {setting.flag: setting.check for setting in SETTINGS}
    known = variables(options)
    for name in sorted(set(environ) - set(known) - OTHERS):
        if name.startswith(PREFIX):
            log.warn("ignoring the environment variable {variable}: no such option", variable=name)
    for name, flag in known.items():
        text = environ.get(name, "")
        if not text.strip():
            continue
        current: Any = options.get(flag)
        handler = options._dispatch[flag]
        if f"{flag}=" not in options.longOpt:  # a switch such as --auth
            if not current and switch(name, text):
                handler(flag)
        elif isinstance(current, list):
            if not current:
                for item in text.split():
                    handler(flag, item)
        elif current is None:
            if flag in checks:
                checks[flag](name, text)
            if isinstance(handler, usage.CoerceParameter):
                handler.dispatch(flag, text)
            else:
                handler(flag, text)
