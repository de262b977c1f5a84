"""v3 client authorization: the public keys of the clients allowed to reach the service.

``--onion-client-auth FILE`` lists one x25519 public key per line, in tor's
own ``authorized_clients`` format (``descriptor:x25519:BASE32``) or as the
bare base32 key; ``#`` starts a comment. Each key is given to ``ADD_ONION``
as ``ClientAuthV3=``: tor then encrypts the service's descriptor to those
clients, and nobody else can even find the service. ``make_client_keys``
makes a key pair: the public line for this file and the private line for the
client's ``ClientOnionAuthDir``.
"""

from __future__ import annotations

import base64
import binascii
import os

import attrs
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

_PREFIX = "descriptor:x25519:"


class ClientAuthError(ValueError):
    """The client key file cannot be used; the message names the file and line."""


def _b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode("ascii").rstrip("=")


def _check_key(text: str) -> str:
    """A base32 x25519 public key (52 characters, 32 bytes), upper case as tor writes it."""
    key = text.strip().upper()
    try:
        raw = base64.b32decode(key + "=" * (-len(key) % 8), casefold=False)
    except binascii.Error:
        raise ValueError(f"{text!r} is not base32")
    if len(key) != 52 or len(raw) != 32:
        raise ValueError(f"{text!r} is not a 32-byte x25519 key in base32 (52 characters)")
    return key


def load_client_keys(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """The base32 public keys listed in ``path``; any bad line stops startup."""
    try:
        with open(path, encoding="ascii") as handle:
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ClientAuthError(f"onion-client-auth: cannot read {path}: {getattr(error, 'strerror', None) or error}")
    keys: list[str] = []
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        if text.startswith(_PREFIX):
            text = text[len(_PREFIX):]
        elif ":" in text:
            raise ClientAuthError(f"onion-client-auth: {path} line {number}: expected {_PREFIX}BASE32 or BASE32")
        try:
            keys.append(_check_key(text))
        except ValueError as error:
            raise ClientAuthError(f"onion-client-auth: {path} line {number}: {error}")
    if not keys:
        raise ClientAuthError(f"onion-client-auth: {path} lists no client key")
    return tuple(keys)


@attrs.frozen
class ClientKeys:
    """One client's key pair, as the two sides of tor want them."""

    public_line: str  # for the gateway's --onion-client-auth file
    private_key: str  # base32; in ADDRESS.auth_private as ADDRESS:descriptor:x25519:KEY

    def private_line(self, address: str) -> str:
        """The line of the client's ``ClientOnionAuthDir/NAME.auth_private`` file."""
        return f"{address.removesuffix('.onion')}:{_PREFIX}{self.private_key}"


def make_client_keys() -> ClientKeys:
    private = X25519PrivateKey.generate()
    raw_private = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    raw_public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return ClientKeys(public_line=_PREFIX + _b32(raw_public), private_key=_b32(raw_private))
