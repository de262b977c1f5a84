"""Protocol v1 for nodes, with no I/O: what both Python clients run.

``NodeCore`` holds requests and replies (``messageId`` correlation), the
heartbeat answer, reconnecting with backoff, registering again and
rejoining rooms (with recovery positions where the gateway gives them). It
never touches a socket, a clock or an event loop: a driver hands it a
``Runtime`` (futures, sleeping, timeouts, tasks) and opens its transports.
The Twisted client (``wingman_gateway.client``) and the asyncio client
(``wingman_gateway.aio``) are two such drivers. Nothing here imports Twisted.
"""

from wingman_gateway.protocol.errors import ClientError
from wingman_gateway.protocol.message import Message
from wingman_gateway.protocol.node import NodeCore

__all__ = ["ClientError", "Message", "NodeCore"]
