"""Text from other nodes, made safe to print on a terminal.

Names, room names and messages come from anyone in a room. Printed raw,
an escape sequence could retitle the window, write the clipboard (OSC 52)
or move the cursor; a carriage return, a newline or a bidi override could
make a line look as if someone else had written it. Every character a
terminal may act on is shown as a visible escape instead (``\\x1b``,
``\\u202e``), so what is printed is exactly what was sent, and only ever
as text.
"""

from __future__ import annotations

import json
import re
from typing import Any

# Bidirectional embeddings, overrides, isolates and marks: they reorder
# what follows them on screen.
_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
# C0 (but tab and newline), DEL, C1, bidi, line/paragraph separators and
# lone surrogates (which cannot even be encoded for the terminal).
_CONTROLS = f"\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}\u2028\u2029\ud800-\udfff"
_UNSAFE = re.compile(f"[{_CONTROLS}]")
_UNSAFE_IN_LINE = re.compile(f"[\t\n{_CONTROLS}]")
_NAMED = {"\r": "\\r", "\x1b": "\\x1b", "\t": "\\t", "\n": "\\n"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def block(text: str, indent: str = "    ") -> str:
    """Text that may span lines: every line after the first starts with ``indent``.

    A continuation line can thus never start where a new message would.
    Tabs stay; every other control character is escaped.
    """
    safe = _UNSAFE.sub(_escape, text)
    return safe.replace("\n", "\n" + indent)


def one_line(text: str) -> str:
    """A name or other short text that must stay on its line (newline and tab escaped too)."""
    return _UNSAFE_IN_LINE.sub(_escape, text)


_JSON_UNSAFE = re.compile(f"[\x7f-\x9f{_BIDI}\u2028\u2029\ud800-\udfff]")


def json_line(value: Any) -> str:
    """One JSON text for a terminal: readable Unicode, but no character a terminal acts on.

    ``json.dumps`` already escapes C0 controls; DEL, C1 controls, bidi
    controls and lone surrogates are escaped here as ``\\uXXXX`` (still
    the same JSON value).
    """
    text = json.dumps(value, ensure_ascii=False)
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
