"""SSH keys: the server's host key and the authorized_keys file of its users.

The authorized_keys file is OpenSSH's format. Each line may start with
options; besides OpenSSH's forwarding switches the gateway reads
``wingman-user="alice,bob"`` (the login names the key is good for) and
``wingman-rooms="a,b"`` (the rooms a node using the key may join), so an SSH
key carries the same ``Grant`` a signed token does.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

import attrs
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.conch.checkers import IAuthorizedKeysDB, SSHPublicKeyChecker
from twisted.conch.ssh import keys
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer
from zope.interface import implementer

from wingman_gateway.auth import Grant
from wingman_gateway.logs import get_logger

log = get_logger("wingman_gateway.ssh")

HOST_KEY_NAME = "ssh_host_ed25519_key"
KEY_TYPES = frozenset(
    {
        b"ssh-ed25519", b"ssh-rsa", b"ssh-dss", b"ecdsa-sha2-nistp256", b"ecdsa-sha2-nistp384",
        b"ecdsa-sha2-nistp521", b"sk-ssh-ed25519@openssh.com", b"sk-ecdsa-sha2-nistp256@openssh.com",
    }
)
# Options that only switch off what this server never offers anyway.
_HARMLESS = frozenset({"no-pty", "no-agent-forwarding", "no-x11-forwarding", "no-user-rc", "pty"})
_Stamp = tuple[int, int, int]


class KeyFileError(ValueError):
    """A key file cannot be used; the message names the file and the problem."""


# -- host key -------------------------------------------------------------------


def default_host_key_path() -> Path:
    """Beside the ``wingman`` command's other files (``$WINGMAN_HOME`` or ``~/.wingman``)."""
    home = os.environ.get("WINGMAN_HOME") or str(Path.home() / ".wingman")
    return Path(home) / HOST_KEY_NAME


def load_host_key(path: str | os.PathLike[str]) -> keys.Key:
    """The private host key at ``path``; an ed25519 key is made (mode 0600) when absent."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return _create_host_key(path)
    except OSError as error:
        raise KeyFileError(f"ssh-host-key: cannot read {path}: {error.strerror}")
    try:
        key: keys.Key = keys.Key.fromString(data)
    except (keys.BadKeyError, keys.EncryptedKeyError, ValueError) as error:
        raise KeyFileError(f"ssh-host-key: {path} is not an unencrypted private key ({error})")
    if key.isPublic():
        raise KeyFileError(f"ssh-host-key: {path} holds a public key; a private key is needed")
    if path.stat().st_mode & 0o077:
        log.warn("SSH host key {path} is readable by others; chmod 600 it", path=str(path))
    return key


def _create_host_key(path: Path) -> keys.Key:
    key = keys.Key(Ed25519PrivateKey.generate())
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as error:
        raise KeyFileError(f"ssh-host-key: cannot create {path}: {error.strerror}")
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.toString("OPENSSH"))
    log.info("created SSH host key {path} ({fingerprint})", path=str(path),
             fingerprint=fingerprint(key))
    return key


def fingerprint(key: keys.Key) -> str:
    """``SHA256:...`` as ``ssh-keygen -l`` prints it."""
    digest: str = key.fingerprint(keys.FingerprintFormats.SHA256_BASE64)
    return "SHA256:" + digest.rstrip("=")


# -- authorized keys ------------------------------------------------------------


@attrs.frozen
class AuthorizedKey:
    """One accepted key and what it allows."""

    key: keys.Key = attrs.field(eq=False)
    blob: bytes
    users: frozenset[str] | None  # None: any login name
    rooms: frozenset[str] | None  # None: any room
    forwarding: bool
    comment: str
    line: int

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.key)

    def grant(self) -> Grant:
        """The same Grant a token would give; the subject names the key, never its bytes."""
        return Grant(subject=self.comment or self.fingerprint, rooms=self.rooms,
                     key_id=self.fingerprint)


def split_options(line: bytes) -> tuple[dict[str, str | None], bytes]:
    """``(options, rest)`` of an authorized_keys line (OpenSSH's quoting rules)."""
    first = line.split(None, 1)[0]
    if first in KEY_TYPES:
        return {}, line
    options: dict[str, str | None] = {}
    text = line.decode("utf-8", "strict")
    i, n = 0, len(text)
    while i < n:
        start = i
        while i < n and text[i] not in ',= \t':
            i += 1
        name = text[start:i].lower()
        value: str | None = None
        if i < n and text[i] == "=":
            if i + 1 >= n or text[i + 1] != '"':
                raise ValueError(f"option {name!r} needs a quoted value")
            i += 2
            chars = []
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n and text[i + 1] == '"':
                    i += 1
                chars.append(text[i])
                i += 1
            if i >= n:
                raise ValueError(f"option {name!r} has no closing quote")
            value = "".join(chars)
            i += 1
        if not name:
            raise ValueError("empty option")
        options[name] = value
        if i < n and text[i] == ",":
            i += 1
            continue
        break
    rest = text[i:].strip()
    if not rest:
        raise ValueError("no key after the options")
    return options, rest.encode("utf-8")


def _names(option: str, value: str | None) -> frozenset[str]:
    if value is None:
        raise ValueError(f"option {option!r} needs a value")
    names = frozenset(part.strip() for part in value.split(",") if part.strip())
    if not names:
        raise ValueError(f"option {option!r} names nothing")
    return names


def parse_line(raw: bytes, number: int) -> AuthorizedKey:
    """One non-comment line; ValueError says what is wrong with it."""
    options, rest = split_options(raw)
    users = rooms = None
    forwarding = True
    for name, value in options.items():
        if name == "wingman-user":
            users = _names(name, value)
        elif name == "wingman-rooms":
            rooms = _names(name, value)
        elif name in ("no-port-forwarding", "restrict"):
            forwarding = False
        elif name == "port-forwarding":
            forwarding = True
        elif name not in _HARMLESS:
            # An option we do not enforce (from=, command=, ...) must not be
            # silently ignored: the line is refused instead.
            raise ValueError(f"unsupported option {name!r}")
    parts = rest.split(None, 2)
    if len(parts) < 2:
        raise ValueError("expected 'TYPE BASE64 [COMMENT]'")
    try:
        key = keys.Key.fromString(b" ".join(parts[:2]))
    except (keys.BadKeyError, ValueError, IndexError) as error:
        raise ValueError(f"not a public key ({error or 'bad key data'})")
    if not key.isPublic():
        raise ValueError("not a public key")
    comment = parts[2].decode("utf-8", "replace").strip() if len(parts) > 2 else ""
    if rooms is not None:
        # A forwarded connection would not carry the key's room scope.
        forwarding = False
    return AuthorizedKey(key=key, blob=key.blob(), users=users, rooms=rooms,
                         forwarding=forwarding, comment=comment, line=number)


def parse(data: bytes, where: str) -> list[AuthorizedKey]:
    """Every usable line; bad lines are skipped with a warning naming the line."""
    entries = []
    for number, raw in enumerate(data.splitlines(), 1):
        raw = raw.strip()
        if not raw or raw.startswith(b"#"):
            continue
        try:
            entries.append(parse_line(raw, number))
        except (ValueError, UnicodeDecodeError) as error:
            log.warn("{file} line {line} ignored: {problem}", file=where, line=number,
                     problem=str(error))
    return entries


@implementer(IAuthorizedKeysDB)
class AuthorizedKeysFile:
    """The keys of ``--ssh-authorized-keys``, re-read when the file changes.

    The file is checked (one ``stat``) at every login, so a key added or
    removed counts from the next login on; a file that became unreadable
    leaves the keys already loaded in force.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._stamp: _Stamp | None = None
        self.entries: list[AuthorizedKey] = []
        try:
            self._load()
        except OSError as error:
            raise KeyFileError(f"ssh-authorized-keys: cannot read {self.path}: {error.strerror}")
        if not self.entries:
            log.warn("no usable key in {path}: nobody can log in over SSH", path=str(self.path))

    def _load(self) -> None:
        stat = self.path.stat()
        stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return
        self.entries = parse(self.path.read_bytes(), str(self.path))
        if self._stamp is not None:
            log.info("reloaded {path}: {count} keys", path=str(self.path), count=len(self.entries))
        self._stamp = stamp

    def refresh(self) -> None:
        try:
            self._load()
        except OSError as error:
            log.error("cannot re-read {path}: {reason}; keeping the keys loaded before",
                      path=str(self.path), reason=error.strerror)

    def entries_for(self, username: bytes) -> list[AuthorizedKey]:
        try:
            login = username.decode("utf-8")
        except UnicodeDecodeError:
            return []
        self.refresh()
        return [e for e in self.entries if e.users is None or login in e.users]

    def getAuthorizedKeys(self, avatarId: bytes) -> Iterable[keys.Key]:
        return [entry.key for entry in self.entries_for(avatarId)]

    def knows_user(self, username: bytes) -> bool:
        return bool(self.entries_for(username))


@attrs.frozen
class SSHIdentity:
    """Who logged in: the login name and the authorized key that proved it."""

    login: str
    entry: AuthorizedKey


class KeyFileChecker(SSHPublicKeyChecker):
    """Conch's public-key checker; the avatar id also names the matching key."""

    def __init__(self, keyfile: AuthorizedKeysFile) -> None:
        super().__init__(keyfile)
        self.keyfile = keyfile

    def requestAvatarId(self, credentials: Any) -> defer.Deferred[SSHIdentity]:
        checked: defer.Deferred[bytes] = super().requestAvatarId(credentials)
        return checked.addCallback(self._identify, credentials)

    def _identify(self, username: bytes, credentials: Any) -> SSHIdentity:
        for entry in self.keyfile.entries_for(username):
            if entry.blob == credentials.blob:
                return SSHIdentity(login=username.decode("utf-8"), entry=entry)
        raise UnauthorizedLogin("key not authorized")  # removed in between

    def refusal(self, username: bytes, blob: bytes) -> tuple[str, str, str]:
        """A refused login as logged: the login name, ``wrong key`` or ``unknown user``,
        and the offered key's fingerprint (never more)."""
        login = username.decode("utf-8", "replace")[:64]
        why = "wrong key" if self.keyfile.knows_user(username) else "unknown user"
        try:
            offered = fingerprint(keys.Key.fromString(blob))
        except Exception:
            offered = "unreadable key"
        return login, why, offered
