"""``wingman gateway join``: the terminal becomes a node in a room.

Interactive by default (typed lines are broadcast, ``/commands`` act); with
``--json`` standard input and output carry one JSON value per line, so any
program can be piped into a room.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from typing import Any, Callable

from twisted.internet import stdio
from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.protocols.basic import LineReceiver

from wingman_gateway.cli.helptext import HelpFormatter
from wingman_gateway.cli.home import Home
from wingman_gateway.cli.local import running_state, websocket_place
from wingman_gateway.cli.render import Renderer, terminal_width
from wingman_gateway.cli.runner import pause, run_async
from wingman_gateway.cli.untrusted import json_line, one_line
from wingman_gateway.client import ClientError, GatewayClient, Message
from wingman_gateway.client.endpoints import DEFAULT_TOR_SOCKS, TOR_SOCKS_VARIABLE

HELP = (
    "commands: /join ROOM, /leave ROOM, /who, /direct NAME|NODE TEXT, /quit; "
    "other lines are sent to the current room"
)
TOKEN_ENV = "WINGMAN_TOKEN"
FULL = "MAX_NODES_REACHED"
# A full gateway is tried this many times more, these seconds apart, before join gives up.
FULL_RETRY_DELAYS = (1.0, 2.0, 4.0)


def websocket_url(target: str) -> str:
    """ws(s):// URL for a gateway given as URL or host[:port]."""
    if "://" not in target:
        target = "ws://" + target
    scheme, rest = target.split("://", 1)
    scheme = {"http": "ws", "https": "wss"}.get(scheme, scheme)
    host, _, path = rest.partition("/")
    if ":" not in host.rsplit("]", 1)[-1] and not host.endswith(".onion"):  # onion: the URL's own port
        host += ":3000"
    return f"{scheme}://{host}/{path or 'ws'}"


class LineInput(LineReceiver):
    """Standard input, one line at a time, handled strictly in order."""

    delimiter = b"\n"

    def __init__(self, handle: Callable[[str], Any], closed: Callable[[], None]) -> None:
        self._handle = handle
        self._closed = closed
        self._chain: Deferred[Any] = succeed(None)

    def lineReceived(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace").rstrip("\r")
        self._chain.addCallback(lambda _: ensureDeferred(self._handle(text)))

    def connectionLost(self, reason: Any = None) -> None:
        self._chain.addCallback(lambda _: self._closed())


def _silence_stdout() -> None:
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


class JoinSession:
    """One terminal node: a client, a current room, and the screen."""

    def __init__(self, reactor: Any, client: GatewayClient, json_mode: bool) -> None:
        self.reactor = reactor
        self.client = client
        self.json_mode = json_mode
        self.room: str | None = None
        self.done: Deferred[int] = Deferred()
        self.output_closed = False
        self.refusal: ClientError | None = None
        self.renderer = Renderer(self._write, terminal_width)

    def _write(self, text: str) -> None:
        if self.output_closed:
            return
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except BrokenPipeError:
            # The reader went away (`join --json | head`): end the node quietly.
            self.output_closed = True
            # Python flushes stdout again at exit; point it at /dev/null then, once the
            # reactor has let go of descriptor 1 (swapping it under epoll breaks shutdown).
            self.reactor.addSystemEventTrigger("after", "shutdown", _silence_stdout)
            ensureDeferred(self.quit())

    def emit(self, record: dict[str, Any]) -> None:
        self._write(json_line(record) + "\n")

    def note(self, text: str) -> None:
        if self.json_mode:
            print(json.dumps({"type": "local", "note": text}), file=sys.stderr, flush=True)
        else:
            self.renderer.line(f"-- {text}")

    # -- from the gateway ----------------------------------------------

    def delivered(self, message: Message) -> None:
        if self.json_mode:
            self.emit(message.envelope)
        else:
            self.renderer.message(message)

    def refused(self, url: str, error: ClientError) -> int:
        """A final refusal: on stdout as an error record with --json, on stderr always; exit 1."""
        self.refusal = error  # the last word: closing afterwards is not reported
        if self.json_mode:
            self.emit({"type": "error", "payload": {"code": error.code, "message": error.message},
                       "final": True})
        print(f"wingman: cannot join {url}: {one_line(f'{error.code}: {error.message}')}", file=sys.stderr)
        return 1

    def state(self, event: str, info: dict[str, Any]) -> None:
        if event == "connected" or self.refusal is not None:
            return  # join reports its own, once the room is joined too; nothing after a refusal
        if event == "disconnected" and info.get("final"):
            refusal = ClientError(info.get("error") or "CONNECTION_LOST", str(info.get("reason")))
            self.finish(self.refused(self.client.url, refusal))
            return
        if event == "reconnecting" and info.get("lastError") == FULL and info.get("attempt", 0) > len(
                FULL_RETRY_DELAYS) + 1:
            refusal = ClientError(FULL, f"the gateway stayed full for {info['attempt'] - 1} attempts")
            ensureDeferred(self.quit(self.refused(self.client.url, refusal)))
            return
        if self.json_mode:
            self.emit({"type": "local", "event": event, **info})
        elif event == "disconnected":
            self.note(f"disconnected: {info.get('reason')}")
        elif event == "reconnecting":
            self.note(f"reconnecting in {info.get('delay', 0):.1f} s (attempt {info.get('attempt')})")
        elif event == "reconnected":
            self.note(f"reconnected as {info.get('nodeId')}")
        elif event == "recovered":
            self.note(f"[{info.get('room')}] {info.get('missed')} missed messages recovered")
        elif event == "gap":
            self.note(f"[{info.get('room')}] messages may have been lost while away ({info.get('reason')})")

    # -- from the terminal ---------------------------------------------

    async def line(self, text: str) -> None:
        try:
            if self.json_mode:
                await self._json_line(text)
            else:
                await self._typed_line(text)
        except ClientError as error:
            if self.json_mode:
                self.emit({"type": "error", "payload": {"code": error.code, "message": error.message}})
            else:
                self.renderer.line(f"! {error.code}: {error.message}")

    async def _json_line(self, text: str) -> None:
        if not text.strip():
            return
        try:
            value = json.loads(text)
        except ValueError as error:
            self.emit({"type": "error", "payload": {"code": "INVALID_INPUT", "message": f"not JSON: {error}"}})
            return
        if self.room is None:
            raise ClientError("NOT_A_MEMBER", "no room: start with --group ROOM")
        await self.client.broadcast(self.room, value)

    async def _typed_line(self, text: str) -> None:
        if not text.strip():
            return
        if not text.startswith("/"):
            if self.room is None:
                self.note("join a room first: /join ROOM")
                return
            await self.client.broadcast(self.room, text)
            return
        command, _, rest = text[1:].partition(" ")
        rest = rest.strip()
        if command == "join" and rest:
            ack = await self.client.join(rest)
            self.room = rest
            names = ", ".join(one_line(str(m.get("name", "?"))) for m in ack.get("members", []))
            self.note(f"in room {rest} with {names}")
        elif command == "leave" and rest:
            await self.client.leave(rest)
            if self.room == rest:
                self.room = next(iter(self.client.rooms), None)
            self.note(f"left {rest}" + (f"; now in {self.room}" if self.room else ""))
        elif command == "who":
            if self.room is None:
                self.note("not in a room")
                return
            members = await self.client.who(self.room)
            self.note(f"{self.room}: " + ", ".join(one_line(f"{m.get('name')} ({m.get('nodeId')})") for m in members))
        elif command == "direct" and len(rest.split(" ", 1)) == 2:
            target, message = rest.split(" ", 1)
            await self.client.direct(await self.node_named(target), message)
        elif command in ("quit", "exit"):
            await self.quit()
        else:
            self.note(HELP)

    async def node_named(self, target: str) -> str:
        """The node id for ``target``: a member's id, or a name unambiguous in this node's rooms."""
        named: dict[str, dict[str, Any]] = {}
        for room in list(self.client.rooms):
            for member in await self.client.who(room):
                if member.get("nodeId") == target:
                    return target
                if member.get("name") == target and member.get("nodeId") != self.client.node_id:
                    named[member["nodeId"]] = member
        if len(named) > 1:
            ids = ", ".join(sorted(named))
            raise ClientError("AMBIGUOUS_NAME", f"{len(named)} members are named {target!r} ({ids}); use a node id")
        return next(iter(named), target)  # not a member's name: the gateway judges the id

    def finish(self, status: int) -> None:
        if not self.done.called:
            self.done.callback(status)

    async def quit(self, status: int = 0) -> None:
        if not self.done.called:
            await self.client.close()
            self.finish(status)


def _target(args: argparse.Namespace) -> tuple[list[str], str | None]:
    """The WebSocket URLs and CA file: the URLs given, else the gateway this WINGMAN_HOME
    started (while it runs), else the default."""
    if args.url:
        return [websocket_url(url) for url in args.url], args.ca_file
    state = running_state(Home.from_environment())
    where = websocket_place(state)
    if where is None or where.websocket is None:
        return [websocket_url("127.0.0.1:3000")], args.ca_file
    return [where.websocket], args.ca_file or (state or {}).get("caFile") or where.certificate


async def _cluster_urls(reactor: Any, args: argparse.Namespace) -> list[str] | None:
    """``--cluster``: one URL of every live gateway in the registry, least loaded first."""
    from wingman_gateway.cluster.registrylist import live_gateways
    from wingman_gateway.cluster.settings import cluster_settings

    try:
        settings = cluster_settings(args.cluster, args.cluster_ca, args.cluster_password_file, None)
        assert settings is not None
        found = await live_gateways(settings, reactor, 5.0)
    except ValueError as error:
        print(f"wingman: cannot read the cluster registry: {error}", file=sys.stderr)
        return None
    urls = [gateway.urls[0] for gateway in found if gateway.urls]
    if not urls:
        print(f"wingman: no live gateway in the cluster registry at {settings.url}", file=sys.stderr)
        return None
    return urls


async def _connect(reactor: Any, client: GatewayClient) -> str:
    """Register; a full gateway is tried again a few times before the refusal stands."""
    for delay in (*FULL_RETRY_DELAYS, None):
        try:
            return await client.connect()
        except ClientError as error:
            if error.code != FULL or delay is None:
                raise
            print(f"wingman: the gateway is full; trying again in {delay:g} s", file=sys.stderr)
            await pause(reactor, delay)
    raise AssertionError("not reached")


async def join_command(reactor: Any, args: argparse.Namespace) -> int:
    ca_file = args.ca_file
    urls: list[str] | None
    if args.auto_discover:
        from wingman_gateway.cli.discover import auto_discover_url

        found = await auto_discover_url(reactor, args.json)
        urls = None if found is None else [found]
    elif getattr(args, "cluster", None):
        urls = await _cluster_urls(reactor, args)
    else:
        urls, ca_file = _target(args)
    if urls is None:
        return 1
    client = GatewayClient(
        urls, args.name, token=args.token or os.environ.get(TOKEN_ENV) or None, capabilities=("terminal",),
        ca_file=ca_file, reactor=reactor, transport=args.transport, tor_socks=args.tor_socks,
    )
    session = JoinSession(reactor, client, args.json)
    client.add_listener(session.delivered)
    client.on_state(session.state)
    try:
        node_id = await _connect(reactor, client)
        if args.group:
            await client.join(args.group)
            session.room = args.group
    except ClientError as error:
        status = session.refused(" ".join(urls), error)
        await client.close()
        return status
    if args.json:
        session.emit({"type": "local", "event": "connected", "nodeId": node_id, "room": session.room,
                      "url": client.url})
    else:
        where = f" in room {session.room}" if session.room else ""
        session.note(f"connected to {client.url} as {args.name} ({node_id}){where}; {HELP}")
    def input_ended() -> None:
        ensureDeferred(session.quit())

    stdio.StandardIO(LineInput(session.line, input_ended), reactor=reactor)
    return await session.done


def add_parser(actions: Any) -> None:
    parser = actions.add_parser(
        "join", help="join a gateway as a node from this terminal",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("url", nargs="*",
                        help="gateway URL (ws://, wss://, http://) or host:port (default: the gateway "
                             "`wingman gateway start` runs, else ws://127.0.0.1:3000/ws); several: gateways "
                             "of one cluster, the least loaded is joined and another takes over if it fails")
    parser.add_argument("--name", default=f"{socket.gethostname()}-terminal", help="node name")
    parser.add_argument("--token", help=f"auth token (default: ${TOKEN_ENV}; the variable keeps it out of ps)")
    parser.add_argument("--group", help="room to join (created if missing)")
    parser.add_argument("--json", action="store_true",
                        help="newline-delimited JSON on stdin (messages) and stdout (envelopes)")
    parser.add_argument("--ca-file", help="PEM CA file to verify a wss:// gateway")
    parser.add_argument("--transport", choices=("websocket", "http", "auto"), default="auto",
                        help="auto (WebSocket, falling back to the HTTP bridge where the upgrade is "
                             "refused, e.g. by a proxy), websocket (only), or http (the HTTP bridge: "
                             "event stream or long poll)")
    parser.add_argument("--auto-transport", action="store_const", dest="transport", const="auto",
                        help="same as --transport auto (the default; kept for older scripts)")
    parser.add_argument("--auto-discover", action="store_true",
                        help="join the first gateway announced on the LAN (mDNS, within 5 s)")
    parser.add_argument("--tor-socks", metavar="ENDPOINT",
                        help=f"Tor's SOCKS port for .onion gateways [${TOR_SOCKS_VARIABLE} or {DEFAULT_TOR_SOCKS}]")
    parser.add_argument("--cluster", metavar="REDIS_URL",
                        help="take the gateways from a cluster's registry (redis://HOST:PORT[/DB])")
    parser.add_argument("--cluster-ca", metavar="PEM", help="CA file that verifies a rediss:// server")
    parser.add_argument("--cluster-password-file", metavar="FILE",
                        help="file holding the Redis password (default: the REDISCLI_AUTH variable)")
    parser.set_defaults(run=lambda args: run_async(join_command, args))
