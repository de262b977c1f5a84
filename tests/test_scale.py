"""The 1000-node scenario on loopback: 100 rooms of 10, every node broadcasts
five numbered messages, and every member gets exactly its room's messages,
once each, in per-sender order."""

from __future__ import annotations

import asyncio
import itertools
import json
import resource
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from harness.support import GatewayProcess, get_url, wait_totals

NODES = 1000
ROOM_SIZE = 10
ROOMS = NODES // ROOM_SIZE
PER_SENDER = 5
# Connections opened at once: under the listen backlog, so no SYN is dropped and retried.
CONNECT_AT_ONCE = 40
STEP_TIMEOUT = 30.0
SCENARIO_TIMEOUT = 100.0


class ScaleNode:
    """One node: a single reader task routes replies by messageId and keeps broadcasts."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.room = f"room-{index // ROOM_SIZE:03d}"
        self.ws: ClientConnection | None = None
        self.node_id: str | None = None
        self.broadcasts: list[dict[str, Any]] = []
        self.unexpected: list[dict[str, Any]] = []
        self.pongs_sent = 0
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count()
        self._reader: asyncio.Task[None] | None = None

    async def open(self, url: str) -> None:
        self.ws = await connect(url, open_timeout=STEP_TIMEOUT, proxy=None, compression=None,
                                ping_interval=None, max_queue=None)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for raw in self.ws:
                message = json.loads(raw)
                waiter = self._pending.pop(message.get("messageId"), None)
                if waiter is not None:
                    waiter.set_result(message)
                elif message["type"] == "broadcast":
                    self.broadcasts.append(message)
                elif message["type"] == "ping":
                    await self.ws.send('{"type":"pong"}')
                    self.pongs_sent += 1
                elif message["type"] != "presence":
                    self.unexpected.append(message)
        except ConnectionClosed:
            pass

    async def send(self, kind: str, payload: dict[str, Any]) -> asyncio.Future[dict[str, Any]]:
        """Send with a fresh messageId; the future gets the reply that carries it."""
        assert self.ws is not None
        message_id = f"{self.index}.{next(self._ids)}"
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[message_id] = waiter
        await self.ws.send(json.dumps({"type": kind, "messageId": message_id, "payload": payload}))
        return waiter

    async def request(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        return await asyncio.wait_for(await self.send(kind, payload), STEP_TIMEOUT)

    async def burst(self) -> list[dict[str, Any]]:
        """Send the numbered broadcasts back to back, in order, then await their acks."""
        waiters = [
            await self.send("broadcast", {"groupId": self.room, "message": {"from": self.index, "seq": seq}})
            for seq in range(PER_SENDER)
        ]
        return list(await asyncio.wait_for(asyncio.gather(*waiters), STEP_TIMEOUT))

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await asyncio.wait_for(self._reader, STEP_TIMEOUT)


@pytest.fixture(scope="module", autouse=True)
def enough_files() -> None:
    """File limits raised before the gateway starts, so it inherits them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = NODES + 200
    if soft < needed:
        assert hard == resource.RLIM_INFINITY or hard >= needed, f"RLIMIT_NOFILE hard limit {hard} < {needed}"
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


pytestmark = pytest.mark.gateway("--max-nodes", "1100", "--rate-limit", "0")


async def gather_all(label: str, steps: list[Any]) -> list[Any]:
    """Await every step; one failure fails the phase, naming it."""
    results = await asyncio.gather(*steps, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, f"{label}: {len(errors)} failed, first: {errors[0]!r}"
    return results


async def scenario(gateway: GatewayProcess) -> list[ScaleNode]:
    nodes = [ScaleNode(i) for i in range(NODES)]
    limit = asyncio.Semaphore(CONNECT_AT_ONCE)

    async def open_one(node: ScaleNode) -> None:
        async with limit:
            await node.open(gateway.url)

    try:
        await gather_all("connect", [open_one(node) for node in nodes])

        acks = await gather_all("register", [n.request("register", {"name": f"n{n.index}"}) for n in nodes])
        for node, ack in zip(nodes, acks):
            assert ack["type"] == "ack", ack
            node.node_id = ack["payload"]["nodeId"]
        assert len({node.node_id for node in nodes}) == NODES

        acks = await gather_all(
            "join", [n.request("join_group", {"groupName": n.room, "createIfNotExists": True}) for n in nodes]
        )
        assert all(ack["type"] == "ack" for ack in acks), [a for a in acks if a["type"] != "ack"][:3]
        assert sum(ack["payload"]["created"] for ack in acks) == ROOMS
        status, stats = await asyncio.to_thread(get_url, f"http://127.0.0.1:{gateway.port}/stats")
        assert status == 200 and stats["nodes"]["totalNodes"] == NODES
        assert sorted(g["name"] for g in stats["groups"]["groups"]) == sorted({n.room for n in nodes})
        for node in stats["nodes"]["nodes"]:
            assert node["rooms"] == [f"room-{int(node['name'][1:]) // ROOM_SIZE:03d}"], node

        # All nodes at once, each sending its numbered messages in order.
        bursts = await gather_all("broadcast", [node.burst() for node in nodes])
        for ack in itertools.chain.from_iterable(bursts):
            assert ack["type"] == "ack" and ack["payload"]["recipients"] == ROOM_SIZE - 1, ack

        # Barrier: every broadcast was acked, so it was written to each member
        # before that member's pong; after the pong, a member has all it will get.
        pongs = await gather_all("barrier", [n.request("ping", {}) for n in nodes])
        assert all(pong["type"] == "pong" for pong in pongs)
    finally:
        await asyncio.gather(*(node.close() for node in nodes if node.ws is not None),
                             return_exceptions=True)
    return nodes


def test_thousand_nodes_hundred_rooms_every_message_once_in_order(gateway: GatewayProcess) -> None:
    nodes = asyncio.run(asyncio.wait_for(scenario(gateway), SCENARIO_TIMEOUT))
    ids = {node.index: node.node_id for node in nodes}
    for node in nodes:
        assert node.unexpected == [], (node.index, node.unexpected[:3])
        members = [m for m in range(NODES) if m // ROOM_SIZE == node.index // ROOM_SIZE and m != node.index]
        got = [(m["payload"]["from"], m["payload"]["seq"]) for m in node.broadcasts]
        # Exactly 9 x 5: none lost, none duplicated, none of its own.
        assert len(got) == len(members) * PER_SENDER, (node.index, len(got))
        assert sorted(got) == [(m, seq) for m in members for seq in range(PER_SENDER)], node.index
        for message in node.broadcasts:
            sender = message["payload"]["from"]
            assert message["fromNodeId"] == message["nodeId"] == ids[sender], message
            assert message["groupName"] == node.room, message
        # Per sender, send order is kept.
        for member in members:
            assert [seq for sender, seq in got if sender == member] == list(range(PER_SENDER))

    # Everyone left cleanly; the gateway is empty and still serving.
    wait_totals(gateway, 0, 0, timeout=STEP_TIMEOUT)
    status, health = get_url(f"http://127.0.0.1:{gateway.port}/health")
    assert status == 200 and health["status"] == "healthy"
    # register, join, the barrier ping and the broadcasts, plus any heartbeat pongs.
    pongs = sum(node.pongs_sent for node in nodes)
    assert health["stats"]["messagesProcessed"] == NODES * (3 + PER_SENDER) + pongs
