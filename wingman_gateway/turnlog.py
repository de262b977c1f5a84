"""A per-node log line written once per reactor turn, for however many nodes.

When thousands of nodes register at once (a gateway restart, a reconnect
storm), one log event each was a tenth of the gateway's time: every event
is filtered, time-stamped, formatted and written on its own. Here the
nodes of one turn share one event. A turn with one node gets the very line
it always got (same text, same fields); a turn with more gets one line
naming every node, with the same facts for each, and the same facts as a
list of objects in the event (``--log-format json`` shows them).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from wingman_gateway.redact import escape


class TurnLog:
    """Info lines of one kind (``single``), gathered per turn of ``clock``.

    ``many`` is the line for several nodes: ``{count}``, ``{nodes}`` (each
    node's ``item``, escaped, joined) and ``{field}`` of ``entries`` (the
    fields of each, as given).
    """

    def __init__(self, clock: IReactorTime, logger: Logger, single: str, many: str, item: str,
                 field: str) -> None:
        self._clock = clock
        self._log = logger
        self._single, self._many, self._item, self._field = single, many, item, field
        self._pending: list[dict[str, Any]] = []
        self._call: IDelayedCall | None = None

    def add(self, **fields: Any) -> None:
        """Log ``single`` with ``fields`` at the end of this turn (together with the turn's others)."""
        self._pending.append(fields)
        if self._call is None:
            self._call = self._clock.callLater(0, self.flush)

    def flush(self) -> None:
        """Write what this turn gathered now."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        pending, self._pending = self._pending, []
        if len(pending) == 1:
            self._log.info(self._single, **pending[0])
        elif pending:
            text = "; ".join(
                self._item.format(**{key: escape(value) if isinstance(value, str) else value
                                     for key, value in fields.items()})
                for fields in pending
            )
            self._log.info(self._many, count=len(pending), nodes=text, **{self._field: pending})
