"""An echo agent on Twisted: every text said in the room comes back as "echo: TEXT".

    WINGMAN_URL=ws://127.0.0.1:3000/ws WINGMAN_TOKEN=... python examples/twisted_echo.py
"""

import os

from twisted.internet import defer, task

from wingman_gateway.client import GatewayClient

URL = os.environ.get("WINGMAN_URL", "ws://127.0.0.1:3000/ws")
ROOM = os.environ.get("WINGMAN_ROOM", "lobby")


async def main(reactor: object) -> None:
    client = GatewayClient(URL, "echo", token=os.environ.get("WINGMAN_TOKEN"), reactor=reactor)
    await client.connect()
    await client.join(ROOM)
    print(f"echo ready as {client.node_id} in {ROOM}", flush=True)
    async for message in client:
        text = message.payload
        if not isinstance(text, str) or text.startswith("echo: "):
            continue  # agent events, JSON values, other echoes
        if message.type == "broadcast":
            await client.broadcast(message.group_name or ROOM, f"echo: {text}")
        elif message.type == "direct" and message.from_node_id:
            await client.direct(message.from_node_id, f"echo: {text}")


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
