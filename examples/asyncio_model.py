"""A streaming "model" agent on asyncio: answers every prompt in the room token
by token (simulated tokens, no network), as agent-start, agent-stream chunks,
a tool call, and agent-complete.

    WINGMAN_URL=ws://127.0.0.1:3000/ws WINGMAN_TOKEN=... python examples/asyncio_model.py
"""

import asyncio
import os
from typing import AsyncIterator

from wingman_gateway.aio import answer, connect

URL = os.environ.get("WINGMAN_URL", "ws://127.0.0.1:3000/ws")
ROOM = os.environ.get("WINGMAN_ROOM", "lobby")


async def model(prompt: str) -> AsyncIterator[str]:
    """Stands in for a model SDK's token stream."""
    for word in f"You asked: {prompt}. Here is my answer.".split(" "):
        await asyncio.sleep(0.01)
        yield word + " "


async def main() -> None:
    async with connect(URL, name="model", token=os.environ.get("WINGMAN_TOKEN"), rooms=[ROOM]) as node:
        print(f"model ready as {node.node_id} in {ROOM}", flush=True)
        async for message in node:
            prompt = message.payload
            if message.type != "broadcast" or not isinstance(prompt, str) or prompt.startswith("echo: "):
                continue
            async with answer(node, message.group_name or ROOM, prompt=prompt, agent="model") as reply:
                async with reply.tool("word_count", {"text": prompt}) as call:
                    call.output = len(prompt.split())
                async for token in model(prompt):
                    await reply.send(token)


if __name__ == "__main__":
    asyncio.run(main())
