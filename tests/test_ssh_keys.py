"""The SSH host key and the authorized_keys file: formats, options, mistakes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from twisted.conch.ssh import keys

from harness.sshkit import UserKey, write_authorized_keys
from wingman_gateway.auth import Grant
from wingman_gateway.transports.ssh.keys import (
    AuthorizedKeysFile,
    KeyFileError,
    load_host_key,
    parse_line,
    split_options,
)


def test_host_key_is_made_once_private_and_ed25519(tmp_path: Path) -> None:
    path = tmp_path / "state" / "ssh_host_ed25519_key"
    made = load_host_key(path)
    assert made.sshType() == b"ssh-ed25519" and not made.isPublic()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_host_key(path) == made  # the second start reads the same key


def test_bad_host_key_files_are_refused_by_name(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_text("not a key\n")
    with pytest.raises(KeyFileError, match=r"ssh-host-key: .*junk is not an unencrypted private key"):
        load_host_key(junk)
    public = tmp_path / "public"
    public.write_text(UserKey(tmp_path, "k").public_line)
    with pytest.raises(KeyFileError, match="holds a public key; a private key is needed"):
        load_host_key(public)


def test_options_are_parsed_with_openssh_quoting() -> None:
    options, rest = split_options(b'wingman-user="alice,bob",no-pty,wingman-rooms="a, b" ssh-ed25519 AAAA c')
    assert options == {"wingman-user": "alice,bob", "no-pty": None, "wingman-rooms": "a, b"}
    assert rest == b"ssh-ed25519 AAAA c"
    assert split_options(b"ssh-ed25519 AAAA c") == ({}, b"ssh-ed25519 AAAA c")
    options, _ = split_options(b'wingman-rooms="x\\"y" ssh-ed25519 AAAA')
    assert options == {"wingman-rooms": 'x"y'}


def test_a_line_becomes_a_grant(tmp_path: Path) -> None:
    key = UserKey(tmp_path, "alice")
    entry = parse_line(key.line('wingman-user="alice" wingman-rooms="ops,dev"'.replace(" w", ",w")).encode(), 1)
    assert entry.users == frozenset({"alice"}) and entry.rooms == frozenset({"ops", "dev"})
    assert entry.grant() == Grant(
        subject="alice@test", rooms=frozenset({"ops", "dev"}), key_id=entry.fingerprint
    )
    assert not entry.forwarding  # a room-scoped key cannot escape its scope by forwarding
    plain = parse_line(key.public_line.encode(), 2)
    assert plain.users is None and plain.rooms is None and plain.forwarding
    assert parse_line(b"restrict " + key.public_line.encode(), 3).forwarding is False
    assert parse_line(b"restrict,port-forwarding " + key.public_line.encode(), 4).forwarding


@pytest.mark.parametrize(
    "line, problem",
    [
        ('from="10.0.0.0/8" {key}', "unsupported option 'from'"),
        ('command="echo hi" {key}', "unsupported option 'command'"),
        ('wingman-rooms {key}', "option 'wingman-rooms' needs a value"),
        ('wingman-rooms="" {key}', "option 'wingman-rooms' names nothing"),
        ('wingman-user="alice {key}', "option 'wingman-user' has no closing quote"),
        ("ssh-ed25519 not-base64!", "not a public key"),
        ("wingman-user=\"a\"", "no key after the options"),
    ],
)
def test_bad_lines_say_what_is_wrong(tmp_path: Path, line: str, problem: str) -> None:
    key = UserKey(tmp_path, "k")
    with pytest.raises(ValueError, match=problem):
        parse_line(line.format(key=key.public_line).encode(), 1)


def test_bad_lines_are_skipped_and_the_rest_load(tmp_path: Path) -> None:
    good, other = UserKey(tmp_path, "good"), UserKey(tmp_path, "other")
    path = write_authorized_keys(
        tmp_path / "authorized_keys",
        "# comment", "", f'from="1.2.3.4" {other.public_line}', "garbage", good.line('wingman-user="g"'),
    )
    keyfile = AuthorizedKeysFile(path)
    assert [e.line for e in keyfile.entries] == [5]
    assert list(keyfile.getAuthorizedKeys(b"g")) == [good.key.public()]
    assert list(keyfile.getAuthorizedKeys(b"someone")) == []
    assert list(keyfile.getAuthorizedKeys(b"\xff")) == []


def test_the_file_is_reread_when_it_changes(tmp_path: Path) -> None:
    first, second = UserKey(tmp_path, "first"), UserKey(tmp_path, "second")
    path = write_authorized_keys(tmp_path / "authorized_keys", first.line())
    keyfile = AuthorizedKeysFile(path)
    assert list(keyfile.getAuthorizedKeys(b"u")) == [first.key.public()]
    write_authorized_keys(path, second.line())
    os.utime(path, ns=(1, 10**18))
    assert list(keyfile.getAuthorizedKeys(b"u")) == [second.key.public()]
    path.unlink()  # unreadable now: the keys already loaded stay
    assert list(keyfile.getAuthorizedKeys(b"u")) == [second.key.public()]


def test_a_missing_file_stops_startup(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match=r"ssh-authorized-keys: cannot read .*nope: No such file"):
        AuthorizedKeysFile(tmp_path / "nope")


def test_public_keys_are_compared_as_keys(tmp_path: Path) -> None:
    key = UserKey(tmp_path, "k")
    entry = parse_line(key.public_line.encode(), 1)
    assert entry.key == keys.Key.fromString(key.public_line.split(" ", 2)[0].encode() + b" " + key.public_line.split(" ")[1].encode())
