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

from wingman_gateway.cli.health import HealthError, describe, fetch_health
from wingman_gateway.cli.home import Home, gateway_alive
from wingman_gateway.cli.runner import pause, run_async
from wingman_gateway.logs import LOG_FILE_ENV

# LSB exit codes of `status`.
RUNNING, DEAD_WITH_PIDFILE, STOPPED, UNKNOWN = 0, 1, 3, 4
START_TIMEOUT = 15.0
_LISTENING = re.compile(r"wingman-gateway listening on (\S+) \((.*):(\d+)\)")
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
        argv += ["--token", args.token]
    if args.discovery:
        argv += ["--discovery", ",".join(args.discovery)]
    if args.mdns_interface:
        argv += ["--mdns-interface", args.mdns_interface]
    return argv + list(args.gateway_options or ())


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


def _urls(log: str) -> list[tuple[str, str]]:
    """(WebSocket URL, health URL) for every TCP/TLS listener in the log."""
    urls = []
    for endpoint, host, port in _LISTENING.findall(log):
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        secure = endpoint.startswith("ssl:")
        urls.append((f"{'wss' if secure else 'ws'}://{host}:{port}/ws",
                     f"{'https' if secure else 'http'}://{host}:{port}/health"))
    return urls


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
    if gateway_alive(pid):
        return pid
    print(f"removing stale pid file {home.pidfile} (pid {pid} is not running)")
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
    offset = home.logfile.stat().st_size if home.logfile.exists() else 0
    command = twistd_command(gateway_args, args.log_format, daemon=True, home=home)
    launched = subprocess.run(
        command, env={**os.environ, LOG_FILE_ENV: str(home.logfile)},
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=START_TIMEOUT,
    )
    log = _log_since(home, offset)
    if launched.returncode != 0:
        reason = _failure_reason(log, launched.stdout + launched.stderr)
        print(f"wingman: the gateway failed to start: {reason}\n  log: {home.logfile}", file=sys.stderr)
        home.pidfile.unlink(missing_ok=True)
        return 1
    deadline = reactor.seconds() + START_TIMEOUT
    report = None
    while report is None:
        log = _log_since(home, offset)
        urls = _urls(log)
        pid = home.read_pid()
        if pid is None or not gateway_alive(pid):
            print(f"wingman: the gateway exited: {_failure_reason(log)}\n  log: {home.logfile}",
                  file=sys.stderr)
            return 1
        if urls:
            try:
                report = await fetch_health(reactor, urls[0][1], timeout=1.0)
                break
            except HealthError:
                pass
        if reactor.seconds() > deadline:
            print(f"wingman: the gateway did not answer /health within {START_TIMEOUT:g} s\n"
                  f"  log: {home.logfile}", file=sys.stderr)
            return 1
        await pause(reactor, 0.1)
    home.save_state({
        "args": gateway_args, "logFormat": args.log_format, "pid": pid,
        "url": urls[0][0], "health": urls[0][1], "started": time.time(),
    })
    print(f"Wingman Gateway '{report['name']}' running (pid {pid})")
    for ws_url, health in urls:
        print(f"  WebSocket: {ws_url}\n  Health:    {health}")
    if isinstance(report.get("onion"), dict):
        print(f"  Onion:     {report['onion'].get('url')}")
    print(f"  Log:       {home.logfile}")
    return 0


async def stop(reactor: Any, args: argparse.Namespace) -> int:
    home = Home.from_environment()
    pid = _clear_stale_pidfile(home)
    if pid is None:
        print("the gateway is not running")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = reactor.seconds() + args.timeout
    while gateway_alive(pid):
        if reactor.seconds() > deadline:
            print(f"the gateway did not stop within {args.timeout:g} s; sending SIGKILL")
            os.kill(pid, signal.SIGKILL)
            deadline = reactor.seconds() + 5
            while gateway_alive(pid) and reactor.seconds() < deadline:
                await pause(reactor, 0.05)
            break
        await pause(reactor, 0.05)
    home.pidfile.unlink(missing_ok=True)
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
    return await start(reactor, args, gateway_args=list(state["args"]))


async def status(reactor: Any, args: argparse.Namespace) -> int:
    home = Home.from_environment()
    pid = home.read_pid()
    if pid is None:
        print("stopped")
        return STOPPED
    if not gateway_alive(pid):
        print(f"stopped (stale pid file {home.pidfile}: pid {pid} is not running)")
        return DEAD_WITH_PIDFILE
    state = home.load_state()
    try:
        report = await fetch_health(reactor, state.get("health", ""), timeout=3.0)
    except HealthError as error:
        print(f"running (pid {pid}) but not answering: {error}")
        return UNKNOWN
    print(f"running (pid {pid}) at {state.get('url')}")
    print(describe(report))
    return RUNNING


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


def add_gateway_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, help="TCP port (default: 3000)")
    parser.add_argument("--host", help="interface to listen on (default: 0.0.0.0)")
    parser.add_argument("--listen", action="append", metavar="ENDPOINT",
                        help="Twisted endpoint to listen on, repeatable (e.g. ssl:3443:...)")
    parser.add_argument("--name", help="gateway name (default: the host name)")
    parser.add_argument("--auth", action="store_true", help="require a token at register")
    parser.add_argument("--token", help="shared auth token")
    parser.add_argument("--keyring", help="key ring for signed tokens (default with --auth: "
                        "$WINGMAN_HOME/keys.json)")
    parser.add_argument("--config", help="gateway config file (JSON)")
    parser.add_argument("--discovery", type=_discovery_methods, metavar="METHODS",
                        help="announce the gateway: mdns, tailscale or mdns,tailscale")
    parser.add_argument("--mdns-interface", metavar="NAME", help="announce over mDNS on this interface only")
    parser.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="log lines as text or one JSON object per line")
    parser.add_argument("gateway_options", nargs=argparse.REMAINDER,
                        help="after --: more `twistd wingman-gateway` options")


def add_parsers(actions: Any) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    parser = actions.add_parser("start", help="start the gateway in the background", formatter_class=fmt)
    add_gateway_options(parser)
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
    parser.set_defaults(run=lambda args: run_async(status, args))
