"""``wingman gateway start|stop|restart|status|run``: a local gateway through twistd."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from wingman_gateway import portsfile
from wingman_gateway.cli.health import HealthError, describe, fetch_health
from wingman_gateway.cli.helptext import HelpFormatter
from wingman_gateway.cli.home import GONE, OTHER, Home, gateway_alive, pid_owner
from wingman_gateway.cli.local import Place, health_places, places, running_state, trust_for
from wingman_gateway.cli.runner import pause, run_async
from wingman_gateway.logs import LOG_FILE_ENV

# LSB exit codes of `status`.
RUNNING, DEAD_WITH_PIDFILE, STOPPED, UNKNOWN = 0, 1, 3, 4
START_TIMEOUT = 15.0
_FAILURE = re.compile(r"#(?:critical|error)\] (.*)")


def twistd_path() -> str:
    beside = Path(sys.executable).with_name("twistd")
    return str(beside) if beside.exists() else (shutil.which("twistd") or "twistd")


def gateway_arguments(args: argparse.Namespace, home: Home) -> list[str]:
    """The ``twistd wingman-gateway`` options a start/run command stands for."""
    argv: list[str] = []
    for endpoint in args.listen or ():
        argv += ["--listen", endpoint]
    if args.port is not None:
        argv += ["--port", str(args.port)]
    if args.host is not None:
        argv += ["--host", args.host]
    if args.name:
        argv += ["--name", args.name]
    if args.config:
        argv += ["--config", str(Path(args.config).resolve())]
    if args.auth:
        argv.append("--auth")
        # Signed tokens from `wingman gateway token` always work with --auth.
        argv += ["--keyring", str(Path(args.keyring).resolve()) if args.keyring else str(home.keyring)]
    elif args.keyring:
        argv += ["--keyring", str(Path(args.keyring).resolve())]
    if args.token:
        # Handed over in a 0600 file: a --token argument would show in ps.
        home.write_private(home.token_file, args.token + "\n")
        argv += ["--token-file", str(home.token_file)]
    elif args.token_file:
        argv += ["--token-file", str(Path(args.token_file).resolve())]
    if args.discovery:
        argv += ["--discovery", ",".join(args.discovery)]
    if args.mdns_interface:
        argv += ["--mdns-interface", args.mdns_interface]
    return argv + _hide_token(list(args.gateway_options or ()), home)


def _hide_token(options: list[str], home: Home) -> list[str]:
    """``--token T`` among the options after ``--`` becomes ``--token-file`` too."""
    hidden: list[str] = []
    rest = iter(options)
    for option in rest:
        if option == "--token" or option.startswith("--token="):
            token = option.partition("=")[2] if "=" in option else next(rest, "")
            home.write_private(home.token_file, token + "\n")
            hidden += ["--token-file", str(home.token_file)]
        else:
            hidden.append(option)
    return hidden


def twistd_command(gateway_args: list[str], log_format: str, daemon: bool, home: Home) -> list[str]:
    logger = f"wingman_gateway.logs.{log_format}_observer"
    if daemon:
        head = [twistd_path(), "--pidfile", str(home.pidfile), "--logger", logger]
    else:
        head = [twistd_path(), "--nodaemon", "--pidfile=", "--logger", logger]
    return head + ["wingman-gateway", *gateway_args]


def _log_since(home: Home, offset: int) -> str:
    try:
        with open(home.logfile, "rb") as handle:
            handle.seek(offset)
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _failure_reason(log: str, output: str = "") -> str:
    """The first critical/error event of the log (text or JSON), else twistd's own words."""
    reasons = [m.group(1) for m in _FAILURE.finditer(log)]
    for line in log.splitlines():
        if line.startswith("{"):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("level") in ("critical", "error"):
                reasons.append(str(record.get("message")))
    if reasons:
        return reasons[0]
    lines = [line for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else "see the log"


def _clear_stale_pidfile(home: Home) -> int | None:
    """The pid of a running gateway, after removing a stale pid file."""
    pid = home.read_pid()
    if pid is None:
        if home.pidfile.exists():
            home.pidfile.unlink()
        return None
    owner = pid_owner(pid)
    if owner not in (GONE, OTHER):
        return pid
    what = "is not running" if owner == GONE else "is now another program"
    print(f"removing stale pid file {home.pidfile} (pid {pid} {what})")
    home.pidfile.unlink(missing_ok=True)
    return None


async def start(reactor: Any, args: argparse.Namespace, gateway_args: list[str] | None = None) -> int:
    home = Home.from_environment()
    home.prepare()
    running = _clear_stale_pidfile(home)
    if running is not None:
        url = home.load_state().get("url", "")
        print(f"wingman: the gateway is already running (pid {running}) {url}".rstrip(), file=sys.stderr)
        return 1
    if gateway_args is None:
        gateway_args = gateway_arguments(args, home)
    home.ports_file.unlink(missing_ok=True)
    offset = home.logfile.stat().st_size if home.logfile.exists() else 0
    command = twistd_command([*gateway_args, "--ports-file", str(home.ports_file)], args.log_format,
                             daemon=True, home=home)
    launched = subprocess.run(
        command, env={**os.environ, LOG_FILE_ENV: str(home.logfile)},
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=START_TIMEOUT,
    )
    if launched.returncode != 0:
        reason = _failure_reason(_log_since(home, offset), launched.stdout + launched.stderr)
        print(f"wingman: the gateway failed to start: {reason}\n  log: {home.logfile}", file=sys.stderr)
        home.pidfile.unlink(missing_ok=True)
        return 1
    ca_file = getattr(args, "ca_file", None)
    found = await _wait_healthy(reactor, home, offset, ca_file, getattr(args, "wait", START_TIMEOUT))
    if isinstance(found, str):
        print(f"wingman: {found}\n  log: {home.logfile}", file=sys.stderr)
        return 1
    pid, ports, report, reached = found
    home.save_state({
        "args": gateway_args, "logFormat": args.log_format, "pid": pid, "caFile": ca_file,
        "listeners": ports["listeners"], "ssh": ports.get("ssh"),
        "url": reached.websocket or reached.health, "health": reached.health, "started": time.time(),
    })
    print(f"Wingman Gateway '{report['name']}' running (pid {pid})")
    _print_places(places(ports), ports.get("ssh"))
    if isinstance(report.get("onion"), dict):
        print(f"  Onion:     {report['onion'].get('url')}")
    print(f"  Log:       {home.logfile}")
    return 0


def _print_places(found: list[Place], ssh: dict[str, Any] | None) -> None:
    for where in found:
        if where.websocket is None:
            print(f"  Unix socket: {where.health[len('unix:'):]} (HTTP: /health, /ws, /bridge/)")
        else:
            print(f"  WebSocket: {where.websocket}\n  Health:    {where.health}")
    if ssh:
        print(f"  SSH:       port {ssh['port']} (ssh -p {ssh['port']} HOST -s wingman)\n"
              f"  Host key:  {ssh.get('fingerprint')}")


async def _wait_healthy(
    reactor: Any, home: Home, offset: int, ca_file: str | None, wait: float
) -> str | tuple[int, dict[str, Any], dict[str, Any], Place]:
    """Wait (bounded) for the ports file and a /health answer on any listener.

    The reason as text when that fails; the gateway this start launched is
    stopped then, so nothing is left half-started.
    """
    deadline = reactor.seconds() + wait
    last_error = "the gateway wrote no ports file"
    while True:
        pid = home.read_pid()
        if pid is None or not gateway_alive(pid):
            home.pidfile.unlink(missing_ok=True)
            return f"the gateway exited: {_failure_reason(_log_since(home, offset))}"
        ports = portsfile.read(str(home.ports_file))
        if ports is not None:
            for where in places(ports):
                try:
                    report = await fetch_health(reactor, where.health, timeout=1.0,
                                                trust=trust_for(where, ca_file))
                except HealthError as error:
                    last_error = str(error)
                    continue
                return pid, ports, report, where
        if reactor.seconds() > deadline:
            await _terminate(reactor, home, pid, 5.0)
            return (f"the gateway did not answer /health within {wait:g} s ({last_error}); "
                    f"stopped it (pid {pid})")
        await pause(reactor, 0.1)


async def _terminate(reactor: Any, home: Home, pid: int, timeout: float) -> bool:
    """SIGTERM ``pid``, SIGKILL after ``timeout``; True if it needed SIGKILL."""
    os.kill(pid, signal.SIGTERM)
    deadline = reactor.seconds() + timeout
    killed = False
    while gateway_alive(pid):
        if reactor.seconds() > deadline:
            os.kill(pid, signal.SIGKILL)
            killed = True
            deadline = reactor.seconds() + 5
            while gateway_alive(pid) and reactor.seconds() < deadline:
                await pause(reactor, 0.05)
            break
        await pause(reactor, 0.05)
    home.pidfile.unlink(missing_ok=True)
    home.ports_file.unlink(missing_ok=True)
    return killed


async def stop(reactor: Any, args: argparse.Namespace) -> int:
    home = Home.from_environment()
    pid = _clear_stale_pidfile(home)
    if pid is None:
        print("the gateway is not running")
        return 0
    if await _terminate(reactor, home, pid, args.timeout):
        print(f"the gateway did not stop within {args.timeout:g} s; sending SIGKILL")
    print(f"stopped the gateway (pid {pid})")
    return 0


async def restart(reactor: Any, args: argparse.Namespace) -> int:
    home = Home.from_environment()
    state = home.load_state()
    if "args" not in state:
        print("wingman: no previous start to repeat; use `wingman gateway start`", file=sys.stderr)
        return 1
    await stop(reactor, args)
    args.log_format = state.get("logFormat", "text")
    args.ca_file = state.get("caFile")
    return await start(reactor, args, gateway_args=list(state["args"]))


async def status(reactor: Any, args: argparse.Namespace) -> int:
    home = Home.from_environment()
    pid = home.read_pid()
    if pid is None:
        print("stopped")
        return STOPPED
    owner = pid_owner(pid)
    if owner == GONE:
        print(f"stopped (stale pid file {home.pidfile}: pid {pid} is not running)")
        return DEAD_WITH_PIDFILE
    if owner == OTHER:
        print(f"stopped (stale pid file {home.pidfile}: pid {pid} is now another program, not the gateway)")
        return DEAD_WITH_PIDFILE
    state = running_state(home)
    ca_file = args.ca_file or (state or {}).get("caFile")
    error: Exception | None = None
    for where in health_places(state) if state else []:
        try:
            report = await fetch_health(reactor, where.health, timeout=3.0, trust=trust_for(where, ca_file))
        except HealthError as failed:
            error = error or failed
            continue
        print(f"running (pid {pid}) at {where.websocket or where.health}")
        print(describe(report))
        return RUNNING
    print(f"running (pid {pid}) but not answering: {error or 'no listeners recorded by its start'}")
    return UNKNOWN


def run_foreground(args: argparse.Namespace) -> int:
    """``run``: the gateway in the foreground, logging to standard output."""
    home = Home.from_environment()
    command = twistd_command(gateway_arguments(args, home), args.log_format, daemon=False, home=home)
    env = {k: v for k, v in os.environ.items() if k != LOG_FILE_ENV}
    os.execve(command[0], command, env)
    return 0  # not reached


def _discovery_methods(text: str) -> tuple[str, ...]:
    from wingman_gateway.discovery.settings import parse_discovery

    try:
        return parse_discovery(text).methods
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_gateway_options(parser: argparse.ArgumentParser, starting: bool = False) -> None:
    parser.add_argument("--port", type=int, help="TCP port (default: 3000)")
    parser.add_argument("--host", help="interface to listen on (default: ::, IPv4 and IPv6)")
    parser.add_argument("--listen", action="append", metavar="ENDPOINT",
                        help="Twisted endpoint to listen on, repeatable (e.g. ssl:3443:..., unix:PATH)")
    parser.add_argument("--name", help="gateway name (default: the host name)")
    parser.add_argument("--auth", action="store_true", help="require a token at register")
    token = parser.add_mutually_exclusive_group()
    token.add_argument("--token", help="shared auth token (handed to the gateway in a 0600 file, "
                       "never on its command line)")
    token.add_argument("--token-file", metavar="FILE", help="file holding the shared auth token")
    parser.add_argument("--keyring", help="key ring for signed tokens (default with --auth: "
                        "$WINGMAN_HOME/keys.json)")
    parser.add_argument("--config", help="gateway config file (JSON)")
    parser.add_argument("--discovery", type=_discovery_methods, metavar="METHODS",
                        help="announce the gateway: mdns, tailscale or mdns,tailscale")
    parser.add_argument("--mdns-interface", metavar="NAME", help="announce over mDNS on this interface only")
    parser.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="log lines as text or one JSON object per line")
    if starting:
        parser.add_argument("--wait", type=float, default=START_TIMEOUT, metavar="SECONDS",
                            help="how long to wait for /health before stopping the gateway again")
        parser.add_argument("--ca-file", metavar="PEM",
                            help="CA bundle that verifies an ssl: listener (default: trust exactly "
                                 "the certificate the gateway is started with)")
    parser.add_argument("gateway_options", nargs=argparse.REMAINDER,
                        help="after --: more `twistd wingman-gateway` options")


def add_parsers(actions: Any) -> None:
    fmt = HelpFormatter
    parser = actions.add_parser("start", help="start the gateway in the background", formatter_class=fmt)
    add_gateway_options(parser, starting=True)
    parser.set_defaults(run=lambda args: run_async(start, args))

    parser = actions.add_parser("run", help="run the gateway in the foreground", formatter_class=fmt)
    add_gateway_options(parser)
    parser.set_defaults(run=run_foreground)

    parser = actions.add_parser("stop", help="stop the background gateway", formatter_class=fmt)
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds before SIGKILL")
    parser.set_defaults(run=lambda args: run_async(stop, args))

    parser = actions.add_parser("restart", help="restart with the options of the last start",
                                formatter_class=fmt)
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds before SIGKILL")
    parser.set_defaults(run=lambda args: run_async(restart, args))

    parser = actions.add_parser("status", help="is the gateway running? (LSB exit codes)",
                                formatter_class=fmt)
    parser.add_argument("--ca-file", metavar="PEM", help="CA bundle that verifies a TLS listener "
                        "(default: the one given to start, else the gateway's own certificate)")
    parser.set_defaults(run=lambda args: run_async(status, args))
