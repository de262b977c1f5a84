"""The Python client library for Wingman Gateway nodes.

::

    client = GatewayClient("wss://gateway.example/ws", "alice", token=TOKEN)
    await client.connect()
    await client.join("alpha")
    await client.broadcast("alpha", {"type": "agent-start"})
    async for message in client:
        ...
"""

from wingman_gateway.client.core import GatewayClient
from wingman_gateway.client.errors import ClientError
from wingman_gateway.client.message import Message
from wingman_gateway.client.transport import IClientTransport, ITransportReceiver

__all__ = ["GatewayClient", "ClientError", "Message", "IClientTransport", "ITransportReceiver"]
