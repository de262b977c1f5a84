"""What happens in the gateway, emitted once; sinks (metrics, the audit log) subscribe.

The Router, the rooms seam, the transports and the wiring emit plain events
by name with their fields; ``Events`` hands each to the handlers that
sinks registered for that name. An event nobody subscribed to costs one
dictionary lookup, so emitting on the hot path is cheap, and fan-out is
reported once per fan-out (``delivered``), never once per recipient.

The events, by name (fields in brackets, in order; the hot-path events
``received``, ``delivered`` and ``replied`` pass them by position, the
others by keyword):

- ``received`` (type, size, seconds): one incoming envelope was handled;
  ``type`` is the envelope's type, or ``invalid``/``unknown``.
- ``delivered`` (transports, excluded, size): a fan-out handed one envelope
  of ``size`` bytes to the members counted in ``transports`` (transport name
  to member count), less one member of transport ``excluded`` (or None).
- ``replied`` (size): the Router answered a request directly.
- ``refused`` (code): an error envelope was sent (by the Router, or a
  bridge session's ``MESSAGES_LOST`` notice queued).
- ``registered`` (node, peer, transport, grant, credential): a node
  registered; ``credential`` is ``none`` (auth off), ``shared``, ``signed``
  or ``ssh-key`` (the grant's ``key_id`` is the key id or fingerprint).
- ``register_refused`` (peer, transport, reason, credential, key_id): a
  register's credential was refused (``reason`` is one of the short, fixed
  ``AuthError`` texts; ``credential`` the kind the token was taken for,
  ``none``, ``shared`` or ``signed``; ``key_id`` the key id a signed
  token's header names, unverified, or None).
- ``dropped`` (transport, reason): a connection was cut off by the gateway:
  ``reason`` is ``slow consumer`` or ``heartbeat timeout``. On the bridge a
  slow consumer is an event stream nobody reads: the stream is cut off, the
  session stays.
- ``bridge_session`` (): an HTTP bridge session was opened.
- ``bridge_dropped`` (count): messages for a bridge session were dropped,
  its queue being full (its client gets one ``MESSAGES_LOST`` notice).
- ``ssh_login`` (peer, login, fingerprint, comment) and ``ssh_refused``
  (peer, login, fingerprint, reason): SSH public-key logins.
- ``forward_refused`` (peer, login, fingerprint, target, reason): an SSH
  forwarding request the gateway refused.
- ``keyring_reload`` (trigger, changed, ok, keys, problem): the key ring was
  re-read (``trigger``: ``signal`` or ``file change``).
- ``api_call`` (peer, admin, method, path, status): a server-API request
  was answered (``admin``: the admin credential's id, or None).
- ``admin_disconnect`` (peer, admin, node_id, name, reason) and
  ``admin_close`` (peer, admin, room, members, reason): what an
  administrator did through the server API.
- ``backplane_state`` (state), ``backplane_forwarded`` (count),
  ``backplane_lost`` (count): a backplane shared by several gateways (a
  provider of ``rooms.IRooms``) reports its link (``off``, ``connecting``,
  ``connected``, ``disconnected``) and the messages it forwarded to other
  gateways or failed to.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

from zope.interface import Interface

from wingman_gateway.logs import get_logger

log = get_logger("wingman_gateway.events")

Handler = Callable[..., None]


class ISink(Interface):
    """Something that wants to know what happens in the gateway."""

    def handlers() -> Mapping[str, Handler]:
        """The event names this sink follows, each with its handler (fields as keywords)."""


class Events:
    """The one fan-out of events; the wiring subscribes the sinks it builds."""

    def __init__(self) -> None:
        self._handlers: dict[str, tuple[Handler, ...]] = {}

    def subscribe(self, sink: Any) -> None:
        """``sink`` (an ``ISink``) gets every event it names from now on."""
        for name, handler in ISink(sink).handlers().items():
            self._handlers[name] = self._handlers.get(name, ()) + (handler,)

    def wants(self, name: str) -> bool:
        """Whether anyone follows ``name`` (to skip work an event would need)."""
        return name in self._handlers

    def emit(self, event: str, /, *values: Any, **fields: Any) -> None:
        """Tell every handler of ``event``; a failing sink never disturbs the gateway.

        Fields go by keyword, except on the hot path (``received``,
        ``delivered``, ``replied``), where they go by position, in the
        order listed above: no keyword dictionary per message.
        """
        for handler in self._handlers.get(event, ()):
            try:
                handler(*values, **fields)
            except Exception:  # a sink's bug must not break routing
                log.failure("event sink failed on {event}", event=event)

    def names(self) -> Iterable[str]:
        return tuple(self._handlers)
