"""What every HTTP bridge client does the same way: timings, the probe, and
reading the session's numbered messages (``after``) exactly once."""

from __future__ import annotations

import json
from typing import Any

from wingman_gateway import __version__

# Asked of the gateway per poll: under its 30 s cap, and under the idle
# timeout of most proxies.
POLL_TIMEOUT = 25
# Delays before re-opening a broken reader; one more failure ends the connection.
READER_RETRIES = (0.1, 0.5, 1.0)
# Confirmations of streamed messages are batched this long.
CONFIRM_DELAY = 0.05
USER_AGENT = f"wingman-gateway-client/{__version__}"
PING = b'{"type":"ping"}'
UNREGISTER = b'{"type":"unregister"}'
SESSION_ENDED = ("AUTH_FAILED", "NOT_REGISTERED")


def is_pong(status: int, body: bytes) -> bool:
    """The probe's answer: the bridge is there and speaks the protocol."""
    return status == 200 and body.startswith(b'{"type":"pong"')


def probe_refusal(status: int) -> str:
    return "no HTTP bridge" if status == 404 else "not a Wingman Gateway bridge"


def closed_reason(data: str) -> tuple[int | None, str]:
    """The ``{code, reason}`` the gateway sends when it ends a session."""
    try:
        closed = json.loads(data)
        return int(closed.get("code")), str(closed.get("reason", ""))
    except (ValueError, TypeError, AttributeError):
        return None, "closed by the gateway"


def session_secret(envelope: dict[str, Any]) -> str | None:
    """The session secret in a register's ack over the bridge."""
    session = envelope.get("session")
    return session if envelope.get("type") == "ack" and isinstance(session, str) else None


class Cursor:
    """The last message received and the last one confirmed to the gateway."""

    def __init__(self) -> None:
        self.after = 0
        self.confirmed = 0

    def take(self, seq: Any) -> bool:
        """Whether message ``seq`` is new (a resumed reader repeats none)."""
        if isinstance(seq, str) and seq.isdigit():
            seq = int(seq)
        if not isinstance(seq, int) or isinstance(seq, bool):
            return True  # unnumbered: passed on
        if seq <= self.after:
            return False
        self.after = seq
        return True
