"""Several gateways, one set of rooms: a rooms backplane over Redis.

``ClusterRooms`` provides ``rooms.IRooms`` like ``LocalRooms`` does, and
keeps, besides this gateway's own nodes, a mirror of every other
gateway's nodes and memberships, fed by Redis pub/sub. ``settings`` reads
``--cluster``; ``link`` holds the Redis connections; ``registry`` keeps
this gateway's entry alive and notices gateways that died; ``directory``
shares the nodes; ``messages`` and ``history`` carry room messages through
Redis, where their order is decided and their history kept; ``wire`` is
what goes through Redis.
"""
