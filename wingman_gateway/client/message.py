"""``Message`` lives with the protocol core (``wingman_gateway.protocol.message``)."""

from wingman_gateway.protocol.message import Message as Message
