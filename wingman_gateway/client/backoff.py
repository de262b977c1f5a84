"""``Backoff`` lives with the protocol core (``wingman_gateway.protocol.backoff``)."""

from wingman_gateway.protocol.backoff import Backoff as Backoff
