"""A streaming "model" agent on Twisted: answers every prompt in the room token
by token (simulated tokens, no network) with the same agent-stream helpers.

    WINGMAN_URL=ws://127.0.0.1:3000/ws WINGMAN_TOKEN=... python examples/twisted_model.py
"""

import os
from typing import Any, AsyncIterator

from twisted.internet import defer, task

from wingman_gateway.agentstream import answer
from wingman_gateway.client import GatewayClient

URL = os.environ.get("WINGMAN_URL", "ws://127.0.0.1:3000/ws")
ROOM = os.environ.get("WINGMAN_ROOM", "lobby")


async def model(reactor: Any, prompt: str) -> AsyncIterator[str]:
    """Stands in for a model's token stream."""
    for word in f"You asked: {prompt}. Here is my answer.".split(" "):
        await task.deferLater(reactor, 0.01, lambda: None)
        yield word + " "


async def main(reactor: Any) -> None:
    client = GatewayClient(URL, "model", token=os.environ.get("WINGMAN_TOKEN"), reactor=reactor)
    await client.connect()
    await client.join(ROOM)
    print(f"model ready as {client.node_id} in {ROOM}", flush=True)
    async for message in client:
        prompt = message.payload
        if message.type != "broadcast" or not isinstance(prompt, str) or prompt.startswith("echo: "):
            continue
        async with answer(client, message.group_name or ROOM, prompt=prompt, agent="model") as reply:
            async with reply.tool("word_count", {"text": prompt}) as call:
                call.output = len(prompt.split())
            async for token in model(reactor, prompt):
                await reply.send(token)


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
