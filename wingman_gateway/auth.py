"""Credentials for joining the gateway: shared tokens and HS256 JWTs.

Signing keys live in a JSON file so they can rotate while the gateway runs.
Secrets and tokens never appear in logs, reprs or exception messages.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hmac
import json
import os
import re
import secrets
import signal
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

import attrs
import jwt
from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from wingman_gateway.events import Events
from wingman_gateway.logs import get_logger

log = get_logger("wingman_gateway.auth")

ISSUER = "wingman-gateway"
FILE_VERSION = 1
MIN_SECRET_BYTES = 32
MAX_TOKEN_LENGTH = 65536  # far beyond any token we issue; refuse before parsing
CLOCK_SKEW = 30.0  # seconds a token's nbf or iat may lie ahead of our clock
_KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

_Stamp = tuple[int, int, int]  # (inode, mtime_ns, size)


class AuthError(Exception):
    """A credential was refused; str(e) is a short reason that is safe to show.

    ``credential`` is the kind the token was taken for (``none`` when there
    was none, ``shared``, ``signed``) and ``key_id`` the key id a signed
    token's header names: read without trusting it, and kept only when it
    has the shape of a key id, so the audit log can say which key was tried.
    """

    def __init__(self, reason: str, credential: str = "none", key_id: str | None = None) -> None:
        super().__init__(reason)
        self.credential = credential
        self.key_id = key_id


@attrs.frozen
class Grant:
    """What a verified credential allows."""

    subject: str | None = None
    rooms: frozenset[str] | None = None
    key_id: str | None = None
    expires_at: float | None = None

    def may_join(self, room_name: str) -> bool:
        """Unscoped grants may join anything; scoped ones only their rooms."""
        return self.rooms is None or room_name in self.rooms


ANONYMOUS = Grant(subject=None, rooms=None, key_id=None, expires_at=None)


@attrs.frozen
class KeyInfo:
    """Public facts about a signing key, for listing; never the secret."""

    id: str
    created: float
    active: bool


@attrs.frozen
class _Key:
    id: str
    created: float
    secret: bytes = attrs.field(repr=False)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _safe_kid(kid: object) -> str | None:
    """A key id from a token is attacker-chosen; only use well-formed ones."""
    return kid if isinstance(kid, str) and _KEY_ID.match(kid) else None


def _parse(data: bytes, where: str) -> tuple[dict[str, _Key], str]:
    """Validate a key file; error messages name the problem, never a secret."""
    def bad(problem: str) -> ValueError:
        return ValueError(f"key ring {where}: {problem}")
    try:
        doc = json.loads(data)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        raise bad("not valid JSON") from None
    if not isinstance(doc, dict) or doc.get("version") != FILE_VERSION:
        raise bad(f"not a version {FILE_VERSION} key ring")
    entries = doc.get("keys")
    if not isinstance(entries, list) or not entries:
        raise bad("no keys")
    keys: dict[str, _Key] = {}
    for n, entry in enumerate(entries):
        kid = entry.get("id") if isinstance(entry, dict) else None
        if _safe_kid(kid) is None or kid in keys:
            raise bad(f"key #{n} has a missing, invalid or duplicate id")
        created, text = entry.get("created"), entry.get("secret")
        if not _is_number(created):
            raise bad(f"key {kid!r} has an invalid 'created' time")
        try:
            secret = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
        except (TypeError, ValueError):
            raise bad(f"key {kid!r} secret is not base64url") from None
        if len(secret) < MIN_SECRET_BYTES:
            raise bad(f"key {kid!r} secret is shorter than {MIN_SECRET_BYTES} bytes")
        assert isinstance(kid, str)  # _safe_kid checked it
        keys[kid] = _Key(id=kid, created=float(created), secret=secret)
    active = doc.get("active")
    if not isinstance(active, str) or active not in keys:
        raise bad("active key is missing or not among the keys")
    return keys, active


class KeyRing:
    """HMAC-SHA256 signing keys in a JSON file (mode 0600)."""

    def __init__(self, path: str | os.PathLike[str], clock: IReactorTime) -> None:
        self._path = Path(path)
        self._clock = clock
        self._keys: dict[str, _Key] = {}
        self._active: str | None = None
        self._stamp: _Stamp | None = None

    def __repr__(self) -> str:
        return f"<KeyRing path={str(self._path)!r} keys={len(self._keys)} active={self._active!r}>"

    @classmethod
    def open(cls, path: str | os.PathLike[str], clock: IReactorTime, create: bool = False) -> KeyRing:
        """Load a key ring, optionally creating it with one fresh key."""
        ring = cls(path, clock)
        try:
            ring._keys, ring._active, ring._stamp = ring._read()
        except FileNotFoundError:
            if not create:
                raise FileNotFoundError(errno.ENOENT, "key ring file not found", str(ring._path)) from None
            key = ring._new_key()
            ring._write({key.id: key}, key.id)
            log.info("key ring created", path=str(ring._path), key_id=key.id)
        return ring

    def _read(self) -> tuple[dict[str, _Key], str, _Stamp]:
        with open(self._path, "rb") as f:
            st = os.fstat(f.fileno())  # of what we read, not of what's there now
            data = f.read()
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        try:
            keys, active = _parse(data, str(self._path))
        except ValueError:
            self._stamp = stamp  # report a bad file once, not on every poll
            raise
        if st.st_mode & 0o077:
            log.warn("key ring file is accessible by other users", path=str(self._path),
                     mode=oct(st.st_mode & 0o777))
        return keys, active, stamp

    # Why the last reload was refused (None: it was not).
    problem: str | None = None

    def reload(self) -> bool:
        """Re-read the file; a bad or missing file keeps the keys we have."""
        self.problem = None
        try:
            keys, active, stamp = self._read()
        except (OSError, ValueError) as e:
            if isinstance(e, OSError):
                self._stamp = None
            problem = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            self.problem = problem
            log.error("key ring reload failed, keeping old keys: {problem}",
                      path=str(self._path), problem=problem, keys=len(self._keys))
            return False
        changed = keys != self._keys or active != self._active
        self._keys, self._active, self._stamp = keys, active, stamp
        return changed

    def reload_if_changed(self) -> bool:
        """Cheap poll: re-read only when inode, mtime or size moved."""
        try:
            st = os.stat(self._path)
            stamp: _Stamp | None = (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        return False if stamp == self._stamp else self.reload()

    def _new_key(self) -> _Key:
        kid = secrets.token_hex(4)
        while kid in self._keys:
            kid = secrets.token_hex(4)
        return _Key(id=kid, created=float(self._clock.seconds()), secret=secrets.token_bytes(32))

    def _write(self, keys: dict[str, _Key], active: str) -> None:
        """Atomically replace the file, then adopt the new state.

        Readers (other processes, our own watcher) never see a half-written
        file, and a failed write leaves memory and disk as they were.
        """
        doc = {"version": FILE_VERSION, "active": active, "keys": [
            {"id": k.id, "created": k.created, "secret": base64.urlsafe_b64encode(k.secret).decode()}
            for k in keys.values()]}
        parent = self._path.parent
        if not parent.exists():
            os.makedirs(parent, mode=0o700)
            os.chmod(parent, 0o700)
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{self._path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), 0o600)
                f.write((json.dumps(doc, indent=2) + "\n").encode())
                f.flush()
                os.fsync(f.fileno())
                st = os.fstat(f.fileno())
            os.replace(tmp, self._path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._keys, self._active = keys, active
        self._stamp = (st.st_ino, st.st_mtime_ns, st.st_size)

    def rotate(self) -> str:
        """Add a fresh key and sign with it from now on; old keys still verify."""
        self.reload_if_changed()  # don't drop keys another process just added
        key = self._new_key()
        self._write({**self._keys, key.id: key}, key.id)
        log.info("key ring rotated", key_id=key.id, keys=len(self._keys), path=str(self._path))
        return key.id

    def retire(self, key_id: str) -> None:
        """Drop a key, invalidating every token it signed."""
        self.reload_if_changed()
        if key_id not in self._keys:
            raise ValueError(f"unknown key id {_safe_kid(key_id)!r}")
        if key_id == self._active or len(self._keys) == 1:
            raise ValueError("refusing to retire the active signing key; rotate first")
        assert self._active is not None
        self._write({k: v for k, v in self._keys.items() if k != key_id}, self._active)
        log.info("key retired", key_id=key_id, keys=len(self._keys), path=str(self._path))

    def keys(self) -> list[KeyInfo]:
        return [KeyInfo(id=k.id, created=k.created, active=k.id == self._active)
                for k in sorted(self._keys.values(), key=lambda k: k.created)]

    def sign(self, subject: str, ttl_seconds: float | None, rooms: Iterable[str] | None = None) -> str:
        """Issue a token with the active key; rooms=None means any room."""
        if self._active is None:
            raise ValueError("key ring has no signing key")
        if not isinstance(subject, str) or not subject:
            raise ValueError("subject must be a non-empty string")
        if ttl_seconds is not None and not ttl_seconds > 0:
            raise ValueError("ttl_seconds must be positive or None")
        now = self._clock.seconds()
        claims: dict[str, Any] = {"sub": subject, "iat": int(now), "iss": ISSUER}
        if ttl_seconds is not None:
            claims["exp"] = now + ttl_seconds
        if rooms is not None:
            names = sorted(set(rooms)) if not isinstance(rooms, str) else None
            if names is None or not all(isinstance(r, str) for r in names):
                raise TypeError("rooms must be an iterable of room names")
            claims["rooms"] = names
        key = self._keys[self._active]
        return jwt.encode(claims, key.secret, algorithm="HS256", headers={"kid": key.id})

    def verify(self, token: str) -> Grant:
        """Check signature, issuer and expiry (by our clock); return the grant."""
        kid: str | None = None

        def refuse(reason: str, cause: str | None = None) -> AuthError:
            log.info("token refused: {reason}", reason=reason, key_id=kid, cause=cause)
            return AuthError(reason, "signed", kid)

        if (not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH
                or not token.isascii() or token.count(".") != 2):
            raise refuse("token malformed")
        try:
            kid = _safe_kid(jwt.get_unverified_header(token).get("kid"))
        except jwt.PyJWTError as e:
            raise refuse("token malformed", type(e).__name__) from None
        key = self._keys.get(kid) if kid is not None else None
        if key is None:
            raise refuse("unknown signing key")
        try:
            claims = jwt.decode(token, key.secret, algorithms=["HS256"], issuer=ISSUER, options={
                "verify_exp": False, "verify_iat": False, "verify_nbf": False, "require": ["sub", "iss"]})
        except jwt.ExpiredSignatureError:
            raise refuse("token expired") from None
        except jwt.InvalidSignatureError:
            raise refuse("token signature invalid") from None
        except jwt.PyJWTError as e:
            raise refuse("token malformed", type(e).__name__) from None
        subject, exp, rooms = claims.get("sub"), claims.get("exp"), claims.get("rooms")
        if not isinstance(subject, str) or not subject:
            raise refuse("token malformed", "sub")
        if exp is not None and not _is_number(exp):
            raise refuse("token malformed", "exp")
        now = self._clock.seconds()
        if exp is not None and now >= exp:
            raise refuse("token expired")
        for claim, problem in (("nbf", "token not valid yet"), ("iat", "token issued in the future")):
            value = claims.get(claim)
            if value is not None and not _is_number(value):
                raise refuse("token malformed", claim)
            if value is not None and value > now + CLOCK_SKEW:
                raise refuse(problem)
        if rooms is not None and (not isinstance(rooms, list) or not all(isinstance(r, str) for r in rooms)):
            raise refuse("token malformed", "rooms")
        return Grant(subject=subject, rooms=None if rooms is None else frozenset(rooms), key_id=kid,
                     expires_at=None if exp is None else float(exp))


class Authenticator:
    """Decides whether a register request's token is accepted.

    When ``required`` is false, tokens are not examined at all: every request
    gets ANONYMOUS, even one carrying a garbage or forged token.  When true, a
    token is accepted if it equals the shared token (constant-time compare) or
    if it looks like a JWT and the key ring verifies it; both may be set.
    """

    def __init__(self, required: bool, shared_token: str | None = None,
                 keyring: KeyRing | None = None) -> None:
        if shared_token is not None and not shared_token:
            raise ValueError("shared token must not be empty")
        if required and shared_token is None and keyring is None:
            raise ValueError("auth required but neither a shared token nor a key ring is configured")
        self.required = required
        self.keyring = keyring
        self._shared = None if shared_token is None else shared_token.encode("utf-8", "surrogatepass")

    def replace_shared_token(self, token: str) -> None:
        """A new shared token (``--token-file`` re-read on SIGHUP); the old one stops working."""
        if not token:
            raise ValueError("shared token must not be empty")
        self._shared = token.encode("utf-8", "surrogatepass")

    def __repr__(self) -> str:
        shared = "set" if self._shared is not None else "unset"
        return f"<Authenticator required={self.required} shared_token={shared} keyring={self.keyring!r}>"

    def authenticate(self, token: object) -> Grant:
        """Return the grant for ``token`` or raise AuthError."""
        if not self.required:
            return ANONYMOUS
        credential = "shared"
        if not isinstance(token, str) or not token:
            reason, credential = "token required", "none"
        elif self._shared is not None and hmac.compare_digest(
                token.encode("utf-8", "surrogatepass"), self._shared):
            return ANONYMOUS
        elif self.keyring is not None and token.count(".") == 2:
            return self.keyring.verify(token)
        else:
            reason = "token not accepted"
        log.info("token refused: {reason}", reason=reason)
        raise AuthError(reason, credential)


class KeyRingWatcher(Service):
    """Reloads the key ring on SIGHUP and when the file changes, so keys rotate without a restart."""

    def __init__(self, keyring: KeyRing, reactor: Any, interval: float = 2.0,
                 install_sighup: bool = True,
                 on_change: Callable[[frozenset[str]], None] | None = None,
                 events: Events | None = None) -> None:
        """``on_change`` gets the key ids in force after each reload that changed them;
        ``events`` is told of every reload (``keyring_reload``)."""
        self._events = events if events is not None else Events()
        self._keyring = keyring
        self._on_change = on_change
        self._reactor = reactor
        self._interval = interval
        self._install_sighup = install_sighup
        self._loop: LoopingCall | None = None
        self._previous: Any = None
        self._installed = False

    def startService(self) -> None:
        super().startService()
        self._loop = LoopingCall(self._poll)
        self._loop.clock = self._reactor
        self._loop.start(self._interval, now=False)
        if self._install_sighup and hasattr(signal, "SIGHUP"):
            try:
                self._previous = signal.signal(signal.SIGHUP, self._on_sighup)
                self._installed = True
            except ValueError:  # only the main thread may install handlers
                log.warn("cannot install SIGHUP handler outside the main thread; polling only")

    def stopService(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        if self._installed:
            # None means the old handler was not set from Python; default is closest.
            signal.signal(signal.SIGHUP, signal.SIG_DFL if self._previous is None else self._previous)
            self._installed, self._previous = False, None
        super().stopService()

    def _on_sighup(self, signum: int, frame: object) -> None:
        self._reactor.callFromThread(self.reload)  # do the work outside signal context

    def _poll(self) -> None:
        try:  # an unexpected error must not stop the LoopingCall for good
            changed = self._keyring.reload_if_changed()
        except Exception:
            log.failure("key ring poll failed")
            return
        if changed:
            log.info("key ring reloaded", keys=len(self._keyring.keys()), changed=True)
            self._changed()
            self._report("file change", True)

    def reload(self) -> None:
        """Reload now (SIGHUP); logs even when nothing changed, as operator feedback."""
        changed = self._keyring.reload()
        log.info("key ring reloaded", keys=len(self._keyring.keys()), changed=changed)
        if changed:
            self._changed()
        self._report("signal", changed)

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(frozenset(key.id for key in self._keyring.keys()))

    def _report(self, trigger: str, changed: bool) -> None:
        ring = self._keyring
        self._events.emit(
            "keyring_reload", trigger=trigger, changed=changed, ok=ring.problem is None,
            keys=[key.id for key in ring.keys()], problem=ring.problem,
        )
