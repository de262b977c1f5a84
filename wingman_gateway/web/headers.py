"""Request headers read in one place, so a malformed one is a 400, never a 500.

twisted.web decodes a header asked for by ``str`` name as UTF-8 and raises
on anything else; a client controls those bytes. ``header`` reads the raw
value and raises ``BadHeader`` with a clear message, which the Site's
request turns into ``400 INVALID_REQUEST`` (``web/request.py``).
"""

from __future__ import annotations

from twisted.web.server import Request


class BadHeader(ValueError):
    """A request header the gateway cannot read; answered 400."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"header {name} {why}")
        self.name = name


# Longest sequence number taken (Last-Event-ID, ?after=): an int64 has 18 safe digits.
MAX_DIGITS = 18


def header(request: Request, name: str) -> str | None:
    """The last ``name`` header as text, None when absent; ``BadHeader`` when unreadable."""
    values = request.requestHeaders.getRawHeaders(name.encode("ascii"))
    if not values:
        return None
    raw = values[-1]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadHeader(name, "is not valid UTF-8")
    if any(ord(ch) < 0x20 and ch != "\t" or ord(ch) == 0x7F for ch in text):
        raise BadHeader(name, "contains control characters")
    return text


def sequence_number(text: str) -> int | None:
    """``text`` as a non-negative whole number in ASCII digits (``²`` is not one), else None."""
    if not text or len(text) > MAX_DIGITS or not (text.isascii() and text.isdigit()):
        return None
    return int(text)
