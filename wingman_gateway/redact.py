"""Untrusted text made safe for logs: escaped, and secrets blotted out.

Names, reasons and addresses in log events come from clients. ``escape``
turns what a terminal or a log reader would act on (control characters,
ESC, line breaks, lone surrogates that cannot even be encoded) into
visible escapes, so every event is written and no line can be forged.
``redact_uri`` blots out secret query parameters however their names are
spelled (``%73ession``, ``Session``, repeated).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote_to_bytes

# Query parameters whose values are never logged (compared case-insensitively,
# after percent-decoding).
SECRET_PARAMETERS = frozenset(
    {"session", "token", "access_token", "auth", "authorization", "secret", "password", "key", "api_key"}
)
REDACTED = b"[redacted]"
_SEPARATORS = re.compile(rb"([&;])")


def escape(text: str) -> str:
    """``text`` with every non-printable character as a Python-style escape (``\\x1b``)."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def _needs_escape(value: Any) -> bool:
    if isinstance(value, str):
        return not value.isprintable()
    if isinstance(value, (list, tuple)):
        return any(isinstance(item, str) and not item.isprintable() for item in value)
    return False


def _escaped(value: Any) -> Any:
    if isinstance(value, str):
        return escape(value)
    return type(value)(escape(item) if isinstance(item, str) else item for item in value)


def escape_event(event: dict[str, Any]) -> dict[str, Any]:
    """A log event whose client-supplied text fields are escaped (the same dict if none needs it)."""
    dirty = [key for key, value in event.items() if not key.startswith("log_") and _needs_escape(value)]
    if not dirty:
        return event
    clean = dict(event)
    for key in dirty:
        clean[key] = _escaped(event[key])
    return clean


def _parameter_name(raw: bytes) -> str:
    """A query parameter's name as a server would read it: percent-decoded (repeatedly), lower case."""
    name = raw.replace(b"+", b" ")
    for _ in range(3):
        decoded = unquote_to_bytes(name)
        if decoded == name:
            break
        name = decoded
    return name.decode("latin-1").strip().lower()


def redact_uri(uri: bytes) -> bytes:
    """``uri`` with the values of secret query parameters replaced by ``[redacted]``."""
    path, mark, query = uri.partition(b"?")
    if not mark:
        return uri
    pieces = _SEPARATORS.split(query)
    for index, piece in enumerate(pieces):
        name, equals, _ = piece.partition(b"=")
        if equals and _parameter_name(name) in SECRET_PARAMETERS:
            pieces[index] = name + b"=" + REDACTED
    return path + mark + b"".join(pieces)
