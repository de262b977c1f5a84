"""The HTTP bridge: nodes that cannot use WebSocket post envelopes and read
their messages with a long poll or server-sent events, as full room members.

``session`` (sessions, their secrets and expiry), ``queue`` (numbered,
bounded delivery), ``readers`` (long poll, event stream), ``resources`` (the
``/bridge/*`` endpoints), ``cors``, ``bounded`` (request body limit) and
``options``.
"""
