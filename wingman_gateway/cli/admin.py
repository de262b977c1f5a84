"""``wingman gateway publish|rooms|who|kick``: the server API from the command line."""

from __future__ import annotations

import argparse
import json
from typing import Any, Awaitable, Callable

from wingman_gateway.cli.apiclient import ApiError, add_common, call, segment
from wingman_gateway.cli.helptext import HelpFormatter
from wingman_gateway.cli.runner import run_async
from wingman_gateway.cli.untrusted import one_line as printable


async def publish(reactor: Any, args: argparse.Namespace) -> Any:
    try:
        message = json.loads(args.message)
    except ValueError:
        raise ApiError(f"the message is not JSON: {args.message[:80]!r} (quote a text: '\"hi\"')")
    answer = await call(reactor, args, "POST", "publish", {"room": args.room, "message": message})
    return answer, f"published to {answer['recipients']} members of {printable(answer['groupName'])}"


async def rooms(reactor: Any, args: argparse.Namespace) -> Any:
    answer = await call(reactor, args, "GET", "rooms")
    lines = [f"{len(answer['groups'])} rooms"]
    for room in answer["groups"]:
        lines.append(f"  {printable(room['name'])}  ({room['memberCount']} members, id {room['id']})")
    return answer, "\n".join(lines)


async def who(reactor: Any, args: argparse.Namespace) -> Any:
    answer = await call(reactor, args, "GET", f"rooms/{segment(args.room)}/members")
    lines = [f"{len(answer['members'])} members of {printable(answer['groupName'])}"]
    for node in answer["members"]:
        lines.append(f"  {node['id']}  {printable(node['name'])}  {node['transport']}  "
                     f"{printable(str(node['peer']))}")
    return answer, "\n".join(lines)


async def kick(reactor: Any, args: argparse.Namespace) -> Any:
    body = {"reason": args.reason} if args.reason else {}
    answer = await call(reactor, args, "POST", f"nodes/{segment(args.node)}/disconnect", body)
    return answer, f"disconnected {answer['nodeId']} ({printable(str(answer['name']))})"


def _runner(command: Callable[..., Awaitable[Any]]) -> Callable[[argparse.Namespace], int]:
    async def run(reactor: Any, args: argparse.Namespace) -> int:
        try:
            answer, text = await command(reactor, args)
        except ApiError as error:
            print(f"wingman: {error}")
            return 1
        print(json.dumps(answer, indent=2) if args.json else text)
        return 0

    return lambda args: run_async(run, args)


def add_parsers(actions: Any) -> None:
    formatter = HelpFormatter
    parser = actions.add_parser("publish", help="publish a JSON message into a room, as the gateway",
                                formatter_class=formatter)
    parser.add_argument("room", help="room name or id")
    parser.add_argument("message", help="the message, as JSON (a text: '\"hello\"')")
    parser.set_defaults(run=_runner(publish))
    add_common(parser)
    parser = actions.add_parser("rooms", help="list the gateway's rooms", formatter_class=formatter)
    parser.set_defaults(run=_runner(rooms))
    add_common(parser)
    parser = actions.add_parser("who", help="list a room's members", formatter_class=formatter)
    parser.add_argument("room", help="room name or id")
    parser.set_defaults(run=_runner(who))
    add_common(parser)
    parser = actions.add_parser("kick", help="disconnect a node", formatter_class=formatter)
    parser.add_argument("node", help="node id")
    parser.add_argument("--reason", help="shown to the node and to its rooms")
    parser.set_defaults(run=_runner(kick))
    add_common(parser)
