"""Request/ack round trips through each Python client: what the shared
protocol core and each driver cost, against a bare ``websockets`` loop.

    .venv/bin/python benchmarks/clients.py [--runs 5] [--count 2000] [--bridge]

Each run starts a fresh gateway (stopped by its pid), then measures, each
client in its own process and in turn (the order rotates per run): one node
sends ``--count`` broadcasts one after another, each awaited until its ack,
to a room with one other member (the same client kind, reading everything).
Prints acked broadcasts per second per run, the medians, and each median's
ratio to the bare ``websockets`` baseline measured in the same runs.
With ``--bridge`` the two library clients talk over the HTTP bridge
(``http://`` URL: posts, and an event stream to read) instead of WebSocket;
the baseline stays the bare ``websockets`` loop.
Everything stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
CLIENTS = ("websockets", "asyncio", "twisted")


async def bare(url: str, count: int) -> float:
    """The baseline: hand-made envelopes on the ``websockets`` library, no client library."""
    from websockets.asyncio.client import connect

    async def node(name: str) -> Any:
        socket = await connect(url)
        await socket.send(json.dumps({"type": "register", "messageId": "r", "payload": {"name": name}}))
        await socket.send(json.dumps({"type": "join_group", "messageId": "j",
                                      "payload": {"groupName": "bench", "createIfNotExists": True}}))
        for _ in range(2):
            await socket.recv()
        return socket

    sender, listener = await node("sender"), await node("listener")

    async def drain() -> None:
        async for _ in listener:
            pass

    reading = asyncio.get_running_loop().create_task(drain())
    started = time.perf_counter()
    for number in range(count):
        await sender.send(json.dumps({"type": "broadcast", "messageId": f"b{number}",
                                      "payload": {"groupId": "bench", "message": {"n": number}}}))
        while json.loads(await sender.recv()).get("messageId") != f"b{number}":
            pass
    elapsed = time.perf_counter() - started
    reading.cancel()
    await sender.close()
    await listener.close()
    return count / elapsed


async def through_asyncio(url: str, count: int) -> float:
    from wingman_gateway.aio import connect

    async with connect(url, name="sender", rooms=["bench"]) as sender, \
            connect(url, name="listener", rooms=["bench"]):
        started = time.perf_counter()
        for number in range(count):
            await sender.broadcast("bench", {"n": number})
        return count / (time.perf_counter() - started)


def through_twisted(url: str, count: int) -> float:
    from twisted.internet import defer, task

    from wingman_gateway.client import GatewayClient

    rate: list[float] = []

    async def main(reactor: Any) -> None:
        sender, listener = GatewayClient(url, "sender"), GatewayClient(url, "listener")
        for client in (sender, listener):
            await client.connect()
            await client.join("bench")
        started = time.perf_counter()
        for number in range(count):
            await sender.broadcast("bench", {"n": number})
        rate.append(count / (time.perf_counter() - started))
        await sender.close()
        await listener.close()

    try:
        task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
    except SystemExit:
        pass
    return rate[0]


def measure(client: str, url: str, count: int) -> float:
    if client == "websockets":
        return asyncio.run(bare(url, count))
    if client == "asyncio":
        return asyncio.run(through_asyncio(url, count))
    return through_twisted(url, count)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--measure", choices=CLIENTS)
    parser.add_argument("--url")
    parser.add_argument("--bridge", action="store_true", help="the library clients over the HTTP bridge")
    args = parser.parse_args()
    if args.measure:
        print(f"{measure(args.measure, args.url, args.count):.1f}")
        return 0
    from procs import start_gateway

    rates: dict[str, list[float]] = {client: [] for client in CLIENTS}
    for run in range(args.runs):
        server = start_gateway()
        try:
            order = CLIENTS[run % 3:] + CLIENTS[: run % 3]
            for client in order:
                if args.bridge and client != "websockets":
                    url = f"http://127.0.0.1:{server.port}"
                else:
                    url = f"ws://127.0.0.1:{server.port}/ws"
                done = subprocess.run(
                    [sys.executable, __file__, "--measure", client, "--url", url, "--count", str(args.count)],
                    capture_output=True, text=True, timeout=300,
                )
                if done.returncode != 0:
                    print(done.stdout, done.stderr, file=sys.stderr)
                    return 1
                rates[client].append(float(done.stdout.split()[-1]))
        finally:
            server.stop()
        print(f"run {run + 1}: " + "  ".join(f"{c} {rates[c][-1]:8.1f}/s" for c in CLIENTS), flush=True)
    baseline = statistics.median(rates["websockets"])
    for client in CLIENTS:
        median = statistics.median(rates[client])
        over = " (HTTP bridge)" if args.bridge and client != "websockets" else ""
        print(f"{client:>10}{over}: median {median:8.1f} acked broadcasts/s, {median / baseline:.2f} x bare websockets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
