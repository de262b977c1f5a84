"""The asyncio client for Wingman Gateway nodes (no Twisted, no reactor).

::

    from wingman_gateway.aio import connect

    async with connect("ws://127.0.0.1:3000/ws", name="echo", token=TOKEN) as node:
        await node.join("alpha")
        await node.broadcast("alpha", {"hello": "room"})
        async for message in node:
            print(message.type, message.from_name, message.payload)

Needs the ``aio`` extra: ``pip install 'wingman-gateway[aio]'``
(``websockets`` and ``httpx``).
"""

from wingman_gateway.aio.node import Node, connect
from wingman_gateway.agentstream import Answer, answer
from wingman_gateway.protocol.errors import ClientError
from wingman_gateway.protocol.message import Message

__all__ = ["connect", "Node", "ClientError", "Message", "answer", "Answer"]
