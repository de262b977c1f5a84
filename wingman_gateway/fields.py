"""Validation of the fields inside request payloads.

Each helper returns the checked value or raises ``GatewayError`` with
``INVALID_REQUEST`` and a message naming the field.
"""

from __future__ import annotations

from typing import Any

from wingman_gateway import errors
from wingman_gateway.errors import GatewayError

_MISSING = object()


def _invalid(message: str) -> GatewayError:
    return GatewayError(errors.INVALID_REQUEST, message)


def text(
    source: dict[str, Any], key: str, max_length: int, required: bool = False
) -> str | None:
    """A string field of 1..max_length characters."""
    value = source.get(key, _MISSING)
    if value is _MISSING or value is None:
        if required:
            raise _invalid(f"'{key}' is required")
        return None
    if not isinstance(value, str):
        raise _invalid(f"'{key}' must be a string")
    if not value.strip():
        raise _invalid(f"'{key}' must not be empty")
    if len(value) > max_length:
        raise _invalid(f"'{key}' is longer than {max_length} characters")
    return value


def flag(source: dict[str, Any], key: str, default: bool) -> bool:
    value = source.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _invalid(f"'{key}' must be true or false")
    return value


def choice(source: dict[str, Any], key: str, allowed: tuple[str, ...]) -> str:
    """One of ``allowed``; the first is the default."""
    value = source.get(key)
    if value is None:
        return allowed[0]
    if value not in allowed:
        raise _invalid(f"'{key}' must be one of: {', '.join(allowed)}")
    return str(value)


def text_list(
    source: dict[str, Any], key: str, max_items: int, max_length: int
) -> list[str]:
    value = source.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _invalid(f"'{key}' must be a list of strings")
    if len(value) > max_items:
        raise _invalid(f"'{key}' has more than {max_items} entries")
    if any(len(v) > max_length for v in value):
        raise _invalid(f"each of '{key}' must be at most {max_length} characters")
    return value


def mapping(source: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = source.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _invalid(f"'{key}' must be an object")
    return value


def first_text(
    sources: tuple[dict[str, Any], ...], key: str, max_length: int
) -> str | None:
    """The field from the first source that has it (payload before envelope)."""
    for source in sources:
        if source.get(key) is not None:
            return text(source, key, max_length)
    return None
