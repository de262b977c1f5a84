"""An echo agent on asyncio: every text said in the room comes back as "echo: TEXT".

    WINGMAN_URL=ws://127.0.0.1:3000/ws WINGMAN_TOKEN=... python examples/asyncio_echo.py
"""

import asyncio
import os

from wingman_gateway.aio import connect

URL = os.environ.get("WINGMAN_URL", "ws://127.0.0.1:3000/ws")
ROOM = os.environ.get("WINGMAN_ROOM", "lobby")


async def main() -> None:
    async with connect(URL, name="echo", token=os.environ.get("WINGMAN_TOKEN"), rooms=[ROOM]) as node:
        print(f"echo ready as {node.node_id} in {ROOM}", flush=True)
        async for message in node:
            text = message.payload
            if not isinstance(text, str) or text.startswith("echo: "):
                continue  # agent events, JSON values, other echoes
            if message.type == "broadcast":
                await node.broadcast(message.group_name or ROOM, f"echo: {text}")
            elif message.type == "direct" and message.from_node_id:
                await node.direct(message.from_node_id, f"echo: {text}")


if __name__ == "__main__":
    asyncio.run(main())
