"""The gateway's configurable limits, in one immutable value."""

from __future__ import annotations

import attrs

MiB = 1024 * 1024
# Node and room ids are 16 hex digits, whatever names may be.
ID_LENGTH = 16


@attrs.frozen
class Limits:
    """Bounds the Router and the transports enforce. Times are seconds."""

    max_payload: int = 1 * MiB
    max_name_length: int = 100
    max_description_length: int = 500
    max_depth: int = 64
    max_capabilities: int = 64
    max_nodes: int = 1000
    max_rooms: int = 10000
    max_rooms_per_node: int = 100
    # Token bucket per connection: sustained messages a second (0 turns it
    # off) and the burst on top; see ratelimit.py.
    message_rate: float = 250.0
    message_burst: int = 500
    # Largest register.metadata kept for a node, as encoded JSON text.
    max_metadata: int = 4096
    max_buffer: int = 4 * MiB  # unsent bytes per client before it is cut off
    ping_interval: float = 30.0
    ping_timeout: float = 60.0

    @property
    def max_reference_length(self) -> int:
        """The longest ``groupId``/``targetNodeId``: an id or a name, so never shorter than an id."""
        return max(self.max_name_length, ID_LENGTH)
