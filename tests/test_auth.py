"""Tests for wingman_gateway.auth: key ring, token checks, authenticator, watcher."""

from __future__ import annotations

import base64
import json
import os
import signal
import stat
import time

import jwt
import pytest
from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher

from wingman_gateway.auth import (
    ANONYMOUS,
    AuthError,
    Authenticator,
    Grant,
    KeyInfo,
    KeyRing,
    KeyRingWatcher,
)


@pytest.fixture
def clock() -> Clock:
    c = Clock()
    c.advance(1_700_000_000)
    return c


@pytest.fixture
def ring_path(tmp_path):
    return tmp_path / "keys" / "keyring.json"


@pytest.fixture
def ring(ring_path, clock) -> KeyRing:
    return KeyRing.open(ring_path, clock, create=True)


@pytest.fixture
def events():
    captured: list[dict] = []
    globalLogPublisher.addObserver(captured.append)
    yield captured
    globalLogPublisher.removeObserver(captured.append)


def secrets_in_file(path) -> list[str]:
    with open(path) as f:
        return [k["secret"] for k in json.load(f)["keys"]]


def reason(exc_info) -> str:
    return str(exc_info.value)


def tamper_payload(token: str, **changes) -> str:
    header, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    new = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{new}.{sig}"


# --- key ring: signing and verifying -------------------------------------


def test_sign_verify_round_trip(ring, clock):
    [info] = ring.keys()
    token = ring.sign("alice", 60, rooms=["lobby", "ops", "lobby"])
    grant = ring.verify(token)
    assert grant == Grant(subject="alice", rooms=frozenset({"lobby", "ops"}), key_id=info.id,
                          expires_at=clock.seconds() + 60)
    assert jwt.get_unverified_header(token)["kid"] == info.id
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims == {"sub": "alice", "iat": 1_700_000_000, "exp": 1_700_000_060,
                      "iss": "wingman-gateway", "rooms": ["lobby", "ops"]}


def test_token_without_ttl_or_rooms(ring, clock):
    token = ring.sign("bob", None)
    assert "exp" not in jwt.decode(token, options={"verify_signature": False})
    clock.advance(10 * 365 * 86400)
    grant = ring.verify(token)
    assert (grant.subject, grant.rooms, grant.expires_at) == ("bob", None, None)


def test_expired_token(ring, clock):
    token = ring.sign("alice", 30)
    clock.advance(29)
    assert ring.verify(token).subject == "alice"
    clock.advance(2)
    with pytest.raises(AuthError) as e:
        ring.verify(token)
    assert reason(e) == "token expired"


def test_tampered_payload(ring):
    token = ring.sign("alice", 60, rooms=["lobby"])
    forged = tamper_payload(token, rooms=["admin"])
    with pytest.raises(AuthError) as e:
        ring.verify(forged)
    assert reason(e) == "token signature invalid"


def test_other_ring_same_kid_is_bad_signature(ring, tmp_path, clock):
    kid = ring.keys()[0].id
    other = KeyRing.open(tmp_path / "other.json", clock, create=True)
    secret = base64.urlsafe_b64encode(os.urandom(32)).decode()
    (tmp_path / "other.json").write_text(json.dumps(
        {"version": 1, "active": kid, "keys": [{"id": kid, "created": 1.0, "secret": secret}]}))
    assert other.reload() is True
    token = other.sign("mallory", 60)
    assert jwt.get_unverified_header(token)["kid"] == kid
    with pytest.raises(AuthError) as e:
        ring.verify(token)
    assert reason(e) == "token signature invalid"


def test_other_ring_unknown_kid(ring, tmp_path, clock):
    other = KeyRing.open(tmp_path / "other.json", clock, create=True)
    with pytest.raises(AuthError) as e:
        ring.verify(other.sign("mallory", 60))
    assert reason(e) == "unknown signing key"


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "x" * 70000, "é.é.é", None, 42])
def test_malformed_tokens(ring, token):
    with pytest.raises(AuthError) as e:
        ring.verify(token)
    assert reason(e) == "token malformed"


def test_wrong_issuer_and_missing_sub_are_malformed(ring, ring_path):
    kid = ring.keys()[0].id
    secret = base64.urlsafe_b64decode(secrets_in_file(ring_path)[0])
    for claims in ({"sub": "a", "iss": "someone-else"}, {"iss": "wingman-gateway"},
                   {"sub": "a", "iss": "wingman-gateway", "rooms": "lobby"}):
        token = jwt.encode(claims, secret, algorithm="HS256", headers={"kid": kid})
        with pytest.raises(AuthError) as e:
            ring.verify(token)
        assert reason(e) == "token malformed"


# --- key ring: rotation, retirement, reloading ---------------------------


def test_rotation_keeps_old_tokens(ring, clock):
    old_kid = ring.keys()[0].id
    old_token = ring.sign("alice", 3600)
    clock.advance(5)
    new_kid = ring.rotate()
    assert new_kid != old_kid and len(new_kid) == 8
    int(new_kid, 16)
    assert ring.verify(old_token).key_id == old_kid
    new_token = ring.sign("alice", 3600)
    assert jwt.get_unverified_header(new_token)["kid"] == new_kid
    assert ring.verify(new_token).key_id == new_kid
    assert ring.keys() == [KeyInfo(old_kid, 1_700_000_000.0, False),
                           KeyInfo(new_kid, 1_700_000_005.0, True)]


def test_retire(ring, ring_path, clock):
    old_kid = ring.keys()[0].id
    old_token = ring.sign("alice", 3600)
    new_kid = ring.rotate()
    new_token = ring.sign("bob", 3600)
    with pytest.raises(ValueError):
        ring.retire(new_kid)  # active
    ring.retire(old_kid)
    with pytest.raises(AuthError) as e:
        ring.verify(old_token)
    assert reason(e) == "unknown signing key"
    assert ring.verify(new_token).subject == "bob"
    with pytest.raises(ValueError):
        ring.retire(new_kid)  # last one
    with pytest.raises(ValueError):
        ring.retire("deadbeef")
    assert [k.id for k in KeyRing.open(ring_path, clock).keys()] == [new_kid]


def test_reload_if_changed_sees_other_instance(ring, ring_path, clock):
    assert ring.reload_if_changed() is False
    other = KeyRing.open(ring_path, clock)
    clock.advance(1)
    new_kid = other.rotate()
    token = other.sign("carol", 60)
    with pytest.raises(AuthError):
        ring.verify(token)
    assert ring.reload_if_changed() is True
    assert ring.verify(token).key_id == new_kid
    assert ring.reload_if_changed() is False


def test_rotate_merges_keys_added_elsewhere(ring, ring_path, clock):
    other = KeyRing.open(ring_path, clock)
    kid_b = other.rotate()
    kid_c = ring.rotate()
    assert {k.id for k in KeyRing.open(ring_path, clock).keys()} >= {kid_b, kid_c}


def test_bad_file_on_reload_keeps_old_keys(ring, ring_path, events):
    token = ring.sign("alice", 60)
    before = ring.keys()
    good = ring_path.read_bytes()
    ring_path.write_bytes(good[: len(good) // 2])
    assert ring.reload() is False
    assert ring.keys() == before
    assert ring.verify(token).subject == "alice"
    errors = [e for e in events if e.get("log_namespace") == "wingman_gateway.auth"
              and e["log_level"].name == "error"]
    assert len(errors) == 1 and "not valid JSON" in formatEvent(errors[0])
    # The same bad file is not reported again on every poll.
    assert ring.reload_if_changed() is False
    assert len([e for e in events if e["log_level"].name == "error"]) == 1
    ring_path.unlink()
    assert ring.reload_if_changed() is False
    assert ring.verify(token).subject == "alice"
    ring_path.write_bytes(good)
    assert ring.reload_if_changed() is False  # same content as held
    assert ring.keys() == before


@pytest.mark.parametrize("doc, problem", [
    ("[]", "not a version 1 key ring"),
    ('{"version": 2, "active": "a", "keys": []}', "not a version 1 key ring"),
    ('{"version": 1, "active": "a", "keys": []}', "no keys"),
    ('{"version": 1, "active": "b", "keys": [{"id": "a", "created": 1, "secret": "%s"}]}',
     "active key is missing"),
    ('{"version": 1, "active": "a", "keys": [{"id": "a", "created": 1, "secret": "%s"}, '
     '{"id": "a", "created": 1, "secret": "%s"}]}', "duplicate id"),
    ('{"version": 1, "active": "a", "keys": [{"id": "a", "created": 1, "secret": "%s"}]}', "shorter than 32"),
    ('{"version": 1, "active": "a", "keys": [{"id": "a", "created": 1, "secret": "%s!"}]}', "not base64url"),
])
def test_open_rejects_bad_files(tmp_path, clock, doc, problem):
    short = base64.urlsafe_b64encode(b"s" * 16).decode()
    secret = short if "shorter" in problem else base64.urlsafe_b64encode(b"s" * 32).decode()
    path = tmp_path / "k.json"
    path.write_text(doc.replace("%s", secret))
    with pytest.raises(ValueError) as e:
        KeyRing.open(path, clock)
    assert problem in str(e.value)
    assert secret not in str(e.value)


def test_open_missing_without_create(tmp_path, clock):
    with pytest.raises(FileNotFoundError):
        KeyRing.open(tmp_path / "absent.json", clock)
    assert not (tmp_path / "absent.json").exists()


def test_init_does_not_touch_disk(tmp_path, clock):
    ring = KeyRing(tmp_path / "nowhere" / "k.json", clock)
    assert ring.keys() == []
    assert not (tmp_path / "nowhere").exists()
    with pytest.raises(ValueError):
        ring.sign("a", 1)


def test_file_and_dir_modes(ring, ring_path):
    assert stat.S_IMODE(os.stat(ring_path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(ring_path.parent).st_mode) == 0o700
    ring.rotate()
    assert stat.S_IMODE(os.stat(ring_path).st_mode) == 0o600
    assert sorted(os.listdir(ring_path.parent)) == ["keyring.json"]  # no temp files left
    doc = json.loads(ring_path.read_text())
    assert doc["version"] == 1 and doc["active"] == ring.keys()[-1].id
    assert all(len(base64.urlsafe_b64decode(k["secret"])) == 32 for k in doc["keys"])


def test_secrets_never_leak(ring, ring_path, clock, events):
    ring.rotate()
    token = ring.sign("alice", 10, rooms=["lobby"])
    forged = tamper_payload(token, sub="admin")
    clock.advance(11)
    errors = []
    for bad in (token, forged):
        with pytest.raises(AuthError) as e:
            ring.verify(bad)
        errors.append(e.value)
    auth = Authenticator(required=True, shared_token="hunter2-shared-secret", keyring=ring)
    with pytest.raises(AuthError) as e:
        auth.authenticate("hunter2-wrong")
    errors.append(e.value)
    texts = [str(x) for x in errors] + [repr(x) for x in errors]
    texts += [repr(ring), str(ring), repr(auth), str(auth), repr(ring.keys()), str(ring.keys())]
    texts += [repr(ring.verify(ring.sign("bob", 10)))]
    texts += [repr(e) for e in events] + [formatEvent(e) for e in events]
    assert events, "refusals are logged"
    needles = [token, forged, "hunter2"]
    for b64 in secrets_in_file(ring_path):
        needles += [b64, b64.rstrip("=")]
    for text in texts:
        for needle in needles:
            assert needle not in text
    refused = [e for e in events if e.get("reason") in ("token expired", "token signature invalid")]
    assert len(refused) == 2


# --- authenticator --------------------------------------------------------


def test_auth_off_is_anonymous_for_anything(ring):
    auth = Authenticator(required=False)
    for token in (None, "", "garbage", 42, ring.sign("alice", 60, rooms=["x"])):
        assert auth.authenticate(token) is ANONYMOUS
    assert ANONYMOUS == Grant(None, None, None, None)


def test_auth_required_needs_config():
    with pytest.raises(ValueError):
        Authenticator(required=True)
    with pytest.raises(ValueError):
        Authenticator(required=True, shared_token="")


@pytest.mark.parametrize("token", [None, "", 123, b"bytes", ["x"]])
def test_token_required(token):
    auth = Authenticator(required=True, shared_token="s3cret")
    with pytest.raises(AuthError) as e:
        auth.authenticate(token)
    assert reason(e) == "token required"


def test_shared_token():
    auth = Authenticator(required=True, shared_token="s3cret")
    assert auth.required is True
    assert auth.authenticate("s3cret") == ANONYMOUS
    for wrong in ("s3cre", "s3cret ", "x.y.z", "\ud800"):
        with pytest.raises(AuthError) as e:
            auth.authenticate(wrong)
        assert reason(e) == "token not accepted"


def test_keyring_only(ring):
    auth = Authenticator(required=True, keyring=ring)
    assert auth.authenticate(ring.sign("alice", 60)).subject == "alice"
    with pytest.raises(AuthError) as e:
        auth.authenticate("not-a-jwt")
    assert reason(e) == "token not accepted"


def test_mixed_mode(ring):
    auth = Authenticator(required=True, shared_token="s3cret", keyring=ring)
    assert auth.authenticate("s3cret") == ANONYMOUS
    grant = auth.authenticate(ring.sign("alice", 60, rooms=["lobby"]))
    assert (grant.subject, grant.rooms) == ("alice", frozenset({"lobby"}))
    with pytest.raises(AuthError) as e:
        auth.authenticate("wrong")
    assert reason(e) == "token not accepted"
    with pytest.raises(AuthError) as e:
        auth.authenticate(tamper_payload(ring.sign("alice", 60), sub="root"))
    assert reason(e) == "token signature invalid"


def test_may_join():
    assert ANONYMOUS.may_join("anything")
    assert Grant("a", None, None, None).may_join("lobby")
    scoped = Grant("a", frozenset({"lobby", "ops"}), "k", None)
    assert scoped.may_join("lobby") and scoped.may_join("ops")
    assert not scoped.may_join("admin")
    assert not Grant("a", frozenset(), None, None).may_join("lobby")


# --- watcher ----------------------------------------------------------------


class FakeReactor(Clock):
    def __init__(self) -> None:
        super().__init__()
        self.from_thread: list = []

    def callFromThread(self, f, *args, **kwargs):
        self.from_thread.append(f)
        f(*args, **kwargs)


def test_watcher_polls(ring, ring_path, clock):
    reactor = FakeReactor()
    watcher = KeyRingWatcher(ring, reactor, interval=2.0, install_sighup=False)
    watcher.startService()
    try:
        other = KeyRing.open(ring_path, clock)
        new_kid = other.rotate()
        reactor.advance(1.9)
        assert new_kid not in [k.id for k in ring.keys()]
        reactor.advance(0.2)
        assert new_kid in [k.id for k in ring.keys()]
        assert ring.verify(other.sign("dave", 60)).key_id == new_kid
    finally:
        watcher.stopService()
    assert not watcher.running
    assert reactor.getDelayedCalls() == []


def test_watcher_sighup(ring, ring_path, clock, events):
    reactor = FakeReactor()
    sentinel_calls = []

    def sentinel(signum, frame):
        sentinel_calls.append(signum)

    old = signal.signal(signal.SIGHUP, sentinel)
    try:
        watcher = KeyRingWatcher(ring, reactor, interval=3600)
        watcher.startService()
        assert signal.getsignal(signal.SIGHUP) is not sentinel
        new_kid = KeyRing.open(ring_path, clock).rotate()
        os.kill(os.getpid(), signal.SIGHUP)
        for _ in range(100):
            if reactor.from_thread:
                break
            time.sleep(0.01)
        assert reactor.from_thread == [watcher.reload]
        assert new_kid in [k.id for k in ring.keys()]
        reloaded = [e for e in events if e.get("log_format") == "key ring reloaded"]
        assert [(e["keys"], e["changed"]) for e in reloaded] == [(2, True)]
        watcher.stopService()
        assert signal.getsignal(signal.SIGHUP) is sentinel
        assert sentinel_calls == []
    finally:
        signal.signal(signal.SIGHUP, old)
