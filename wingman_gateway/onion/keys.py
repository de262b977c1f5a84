"""The onion service's key file: tor's ``ED25519-V3:`` text, kept so the address is stable.

The file holds the key exactly as ``ADD_ONION`` takes it (and as tor itself
answers ``NEW:ED25519-V3``): ``ED25519-V3:`` and the base64 of the 64-byte
expanded ed25519 secret key. The gateway makes it itself on first start, so
the ``.onion`` address is known (and logged, and announced) before tor
answers; the address is a pure function of the key (rend-spec-v3, 6).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path

import attrs
from nacl.bindings import crypto_scalarmult_ed25519_base_noclamp

from wingman_gateway.logs import get_logger

log = get_logger("wingman_gateway.onion.keys")

KEY_TYPE = "ED25519-V3"
KEY_FILE_NAME = "onion_ed25519_key"
_VERSION = b"\x03"


class OnionKeyError(ValueError):
    """The key file cannot be used; the message names the file and the problem."""


def default_key_path() -> Path:
    """Beside the gateway's other files (``$WINGMAN_HOME`` or ``~/.wingman``)."""
    home = os.environ.get("WINGMAN_HOME") or str(Path.home() / ".wingman")
    return Path(home) / KEY_FILE_NAME


@attrs.frozen
class OnionKey:
    """An expanded ed25519 secret key (64 bytes: clamped scalar, then prefix)."""

    secret: bytes = attrs.field(repr=False)

    @classmethod
    def generate(cls) -> "OnionKey":
        expanded = bytearray(hashlib.sha512(os.urandom(32)).digest())
        expanded[0] &= 248  # clamping, as ed25519 does for every secret scalar
        expanded[31] &= 127
        expanded[31] |= 64
        return cls(bytes(expanded))

    @classmethod
    def parse(cls, text: str) -> "OnionKey":
        kind, _, blob = text.strip().partition(":")
        if kind != KEY_TYPE:
            raise ValueError(f"expected {KEY_TYPE}:BASE64, as tor's ADD_ONION takes it")
        try:
            secret = base64.b64decode(blob, validate=True)
        except binascii.Error as error:
            raise ValueError(f"the key is not base64 ({error})")
        if len(secret) != 64 or secret[0] & 7 or secret[31] & 128 or not secret[31] & 64:
            raise ValueError("not an expanded ed25519 secret key (64 bytes, clamped)")
        return cls(secret)

    def text(self) -> str:
        """``ED25519-V3:BASE64``, for the file and for ``ADD_ONION``."""
        return f"{KEY_TYPE}:{base64.b64encode(self.secret).decode('ascii')}"

    @property
    def public_key(self) -> bytes:
        return bytes(crypto_scalarmult_ed25519_base_noclamp(self.secret[:32]))

    @property
    def address(self) -> str:
        """The 56-character v3 service id (the ``.onion`` name without ``.onion``)."""
        public = self.public_key
        checksum = hashlib.sha3_256(b".onion checksum" + public + _VERSION).digest()[:2]
        return base64.b32encode(public + checksum + _VERSION).decode("ascii").lower()


def load_key(path: str | os.PathLike[str]) -> OnionKey:
    """The key at ``path``; a new one is made (mode 0600) when the file is absent."""
    path = Path(path)
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return _create(path)
    except (OSError, UnicodeDecodeError) as error:
        raise OnionKeyError(f"onion-key: cannot read {path}: {getattr(error, 'strerror', None) or error}")
    try:
        key = OnionKey.parse(text)
    except ValueError as error:
        raise OnionKeyError(f"onion-key: {path}: {error}")
    if path.stat().st_mode & 0o077:
        log.warn("onion key {path} is readable by others; chmod 600 it", path=str(path))
    return key


def _create(path: Path) -> OnionKey:
    key = OnionKey.generate()
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as error:
        raise OnionKeyError(f"onion-key: cannot create {path}: {error.strerror}")
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(key.text() + "\n")
    log.info("created onion service key {path} ({address}.onion)", path=str(path), address=key.address)
    return key
