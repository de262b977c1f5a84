"""``wingman gateway tunnel``: reach a gateway, or publish one, through OpenSSH.

``tunnel user@host`` forwards a local port to the gateway on ``host`` with
``ssh -N -L`` and joins it through that port as a node (the ``join``
command's own code); ``tunnel reverse user@host`` publishes the local
gateway on ``host`` with ``ssh -N -R`` and keeps it published until stopped.
The user's ``ssh`` is used, so ``~/.ssh/config``, keys and ssh-agent apply.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from typing import Any

from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol

from wingman_gateway.cli.helptext import HelpFormatter
from wingman_gateway.cli.join import join_command
from wingman_gateway.cli.runner import run_async
from wingman_gateway.cli.sshchild import SSHChild
from wingman_gateway.client.backoff import Backoff

KEEPALIVE = ["-o", "ExitOnForwardFailure=yes", "-o", "ServerAliveInterval=15",
             "-o", "ServerAliveCountMax=3"]
PROBE_EVERY = 0.1
# A reverse link that stayed up this long starts its backoff afresh when it drops.
STABLE_AFTER = 30.0


class TunnelError(Exception):
    """The tunnel could not be opened; the message says why."""


class Reporter:
    """Local notes: text on stderr, or JSON ``local`` records on stdout with --json."""

    def __init__(self, json_mode: bool) -> None:
        self.json_mode = json_mode

    def event(self, event: str, text: str, **fields: Any) -> None:
        if self.json_mode:
            print(json.dumps({"type": "local", "event": event, **fields}), flush=True)
        else:
            print(f"-- {text}", file=sys.stderr, flush=True)

    def ssh_line(self, line: str) -> None:
        if line.startswith("debug"):
            return  # -v output is read for readiness only
        if self.json_mode:
            print(json.dumps({"type": "local", "note": f"ssh: {line}"}), file=sys.stderr, flush=True)
        else:
            print(f"ssh: {line}", file=sys.stderr, flush=True)


def ssh_argv(args: argparse.Namespace) -> list[str]:
    """The ``ssh`` command line both directions share."""
    argv = [args.ssh_command, "-p", str(args.ssh_port), *KEEPALIVE]
    if args.ssh_config:
        argv += ["-F", args.ssh_config]
    if args.identity:
        argv += ["-i", args.identity]
    for option in args.ssh_option or ():
        argv += ["-o", option]
    return argv


def free_local_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def accepting(reactor: Any, port: int) -> bool:
    """True if 127.0.0.1:``port`` takes a TCP connection now."""
    try:
        proto = await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=2), Protocol())
    except Exception:
        return False
    proto.transport.loseConnection()
    return True


async def wait_for_port(reactor: Any, port: int, child: SSHChild, timeout: float) -> None:
    """Poll (on the reactor, bounded in time) until the forwarded port accepts."""
    deadline = reactor.seconds() + timeout
    while True:
        if child.status is not None:
            raise TunnelError(child.explain())
        if await accepting(reactor, port):
            return
        if reactor.seconds() >= deadline:
            raise TunnelError(f"local port {port} did not open within {timeout:g} s")
        waited: defer.Deferred[None] = defer.Deferred()
        reactor.callLater(PROBE_EVERY, waited.callback, None)
        await waited


async def forward_command(reactor: Any, args: argparse.Namespace) -> int:
    report = Reporter(args.json)
    local = args.local_port or free_local_port()
    child = SSHChild(reactor, ssh_argv(args) + [
        "-N", "-L", f"127.0.0.1:{local}:127.0.0.1:{args.port}", args.destination,
    ], report.ssh_line)
    child.start()
    stopping: list[bool] = []

    def stop() -> defer.Deferred[int]:
        stopping.append(True)
        return child.stop()

    # Ctrl+C / SIGTERM stop the reactor; ssh is stopped (and waited for) first.
    trigger = reactor.addSystemEventTrigger("before", "shutdown", stop)
    try:
        try:
            await wait_for_port(reactor, local, child, args.connect_timeout)
        except TunnelError as error:
            print(f"wingman: tunnel to {args.destination} failed: {error}", file=sys.stderr)
            return 1
        report.event("tunnel", f"tunnel to {args.destination} open on 127.0.0.1:{local} "
                     f"(ssh pid {child.pid})", localPort=local, sshPid=child.pid,
                     destination=args.destination)
        joined = defer.ensureDeferred(join_command(reactor, join_arguments(args, local)))
        tunnel_down = child.ended()
        index: int
        result, index = await defer.DeferredList(
            [joined, tunnel_down], fireOnOneCallback=True, fireOnOneErrback=True, consumeErrors=True
        )
        if index == 1:
            joined.cancel()
            if stopping:
                return 0
            print(f"wingman: tunnel to {args.destination} closed: {child.explain()}", file=sys.stderr)
            return 1
        return int(result)
    finally:
        reactor.removeSystemEventTrigger(trigger)
        await child.stop()


def join_arguments(args: argparse.Namespace, local: int) -> argparse.Namespace:
    """What ``wingman gateway join`` would get for the forwarded port."""
    return argparse.Namespace(
        url=[f"ws://127.0.0.1:{local}/ws"], name=args.name, token=args.token, group=args.group,
        json=args.json, ca_file=None, transport="auto", tor_socks=None,
        auto_discover=False, cluster=None,
    )


async def reverse_command(reactor: Any, args: argparse.Namespace) -> int:
    report = Reporter(args.json)
    backoff = Backoff(minimum=1.0, maximum=60.0)
    state: dict[str, Any] = {"stopping": False, "child": None, "sleep": None}

    def stop() -> Any:
        state["stopping"] = True
        if state["sleep"] is not None and not state["sleep"].called:
            state["sleep"].callback(None)
        return state["child"].stop() if state["child"] is not None else None

    trigger = reactor.addSystemEventTrigger("before", "shutdown", stop)
    if not await accepting(reactor, args.port):
        report.event("warning", f"nothing accepts connections on 127.0.0.1:{args.port} yet",
                     port=args.port)
    attempt, ever_up = 0, False
    try:
        while not state["stopping"]:
            up_since: list[float] = []

            def line(text: str) -> None:
                if "remote forward success" in text and not up_since:
                    up_since.append(reactor.seconds())
                    report.event("published", f"gateway 127.0.0.1:{args.port} published on "
                                 f"{args.destination} port {args.remote_port} (ssh pid {child.pid})",
                                 remotePort=args.remote_port, sshPid=child.pid)
                report.ssh_line(text)

            child = state["child"] = SSHChild(reactor, ssh_argv(args) + [
                "-v", "-N", "-R", f"{args.remote_port}:127.0.0.1:{args.port}", args.destination,
            ], line)
            child.start()
            await child.ended()
            if state["stopping"]:
                break
            if not up_since and not ever_up:
                print(f"wingman: cannot publish on {args.destination}: {child.explain()}",
                      file=sys.stderr)
                return 1
            ever_up = ever_up or bool(up_since)
            if up_since and reactor.seconds() - up_since[0] >= STABLE_AFTER:
                attempt = 0
            attempt += 1
            delay = backoff.delay(attempt)
            report.event("reconnecting", f"link to {args.destination} dropped ({child.explain()}); "
                         f"reconnecting in {delay:.1f} s", delay=delay, attempt=attempt)
            state["sleep"] = defer.Deferred()
            call = reactor.callLater(delay, state["sleep"].callback, None)
            await state["sleep"]
            if call.active():
                call.cancel()
        return 0
    finally:
        reactor.removeSystemEventTrigger(trigger)
        if state["child"] is not None:
            await state["child"].stop()


def tunnel(args: argparse.Namespace) -> int:
    words = args.words
    if len(words) == 2 and words[0] == "reverse":
        mode, args.destination = "reverse", words[1]
    elif len(words) == 1:
        mode, args.destination = "forward", words[0]
    else:
        args.parser.error("expected `tunnel user@host` or `tunnel reverse user@host`")
    if mode == "forward" and args.remote_port is not None:
        args.parser.error("--remote-port is for `tunnel reverse`")
    if mode == "reverse":
        if args.local_port is not None or args.group or args.token:
            args.parser.error("--local-port, --group and --token are for `tunnel user@host`")
        args.remote_port = 3000 if args.remote_port is None else args.remote_port
        return run_async(reverse_command, args)
    return run_async(forward_command, args)


def add_parser(actions: Any) -> None:
    parser = actions.add_parser(
        "tunnel", help="reach a gateway through SSH (or publish one with `reverse`)",
        formatter_class=HelpFormatter,
        description="`tunnel user@host`: forward a local port to the gateway on HOST and join it "
        "as a node. `tunnel reverse user@host`: publish the local gateway on HOST until stopped.",
    )
    parser.add_argument("words", nargs="+", metavar="[reverse] user@host")
    port = lambda text: _port(parser, text)  # noqa: E731
    parser.add_argument("--port", type=port, default=3000,
                        help="the gateway's port (on HOST; with reverse, on this machine)")
    parser.add_argument("--local-port", type=port, help="local end of the tunnel [a free port]")
    parser.add_argument("--remote-port", type=port,
                        help="reverse: port to open on HOST [3000]")
    parser.add_argument("--ssh-port", type=port, default=22, help="SSH port of HOST")
    parser.add_argument("--name", default=f"{socket.gethostname()}-tunnel", help="node name")
    parser.add_argument("--group", help="room to join")
    parser.add_argument("--token", help="auth token for the gateway (default: $WINGMAN_TOKEN)")
    parser.add_argument("--json", action="store_true",
                        help="newline-delimited JSON on stdin/stdout, as `join --json`")
    parser.add_argument("-i", "--identity", help="private key file for ssh")
    parser.add_argument("-F", "--ssh-config", help="ssh config file instead of ~/.ssh/config")
    parser.add_argument("-o", "--ssh-option", action="append", metavar="KEY=VALUE",
                        help="extra ssh option, repeatable")
    parser.add_argument("--ssh-command", default="ssh", help="the ssh program")
    parser.add_argument("--connect-timeout", type=float, default=30.0,
                        help="seconds to wait for the tunnel to open")
    parser.set_defaults(run=tunnel, parser=parser)


def _port(parser: argparse.ArgumentParser, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 1 <= value <= 65535:
        parser.error(f"not a TCP port: {text!r}")
    return value
