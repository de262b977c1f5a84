"""`wingman gateway token` drives key rotation on a running gateway."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from harness.support import Node, start_gateway

WINGMAN = str(Path(sys.executable).with_name("wingman"))


def wingman(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [WINGMAN, "gateway", "token", *args],
        env={**os.environ, "WINGMAN_HOME": str(home)},
        capture_output=True, text=True, timeout=30,
    )


def register(url: str, token: str) -> dict:
    node = Node(url)
    try:
        return node.register("n", token=token)
    finally:
        node.close()


def test_generate_rotate_retire_against_a_running_gateway(tmp_path: Path) -> None:
    keyring = tmp_path / "keys.json"
    first = wingman(tmp_path, "--generate", "--subject", "alice", "--rooms", "alpha,beta", "--ttl", "1h")
    assert first.returncode == 0, first.stderr
    old_token = first.stdout.strip()
    assert keyring.stat().st_mode & 0o777 == 0o600
    gateway = start_gateway("--auth", "--keyring", str(keyring))
    try:
        node = Node(gateway.url)
        assert node.register("alice", token=old_token)["type"] == "ack"
        assert node.join("alpha")["type"] == "ack"
        refused = node.join("gamma")
        assert refused["payload"]["code"] == "FORBIDDEN"
        assert refused["payload"]["message"] == "your token does not allow room 'gamma'"
        node.close()

        rotated = wingman(tmp_path, "--rotate", "--generate", "--subject", "bob")
        assert rotated.returncode == 0, rotated.stderr
        new_token = rotated.stdout.strip().splitlines()[-1]
        os.kill(gateway.proc.pid, signal.SIGHUP)
        gateway.wait_for(r"key ring reloaded")
        assert register(gateway.url, new_token)["type"] == "ack"
        assert register(gateway.url, old_token)["type"] == "ack"

        listing = wingman(tmp_path, "--list")
        old_id, new_id = [line.split()[0] for line in listing.stdout.splitlines()]
        assert listing.stdout.splitlines()[1].endswith("(active)")
        secrets = [k["secret"] for k in json.loads(keyring.read_text())["keys"]]
        assert not any(secret in listing.stdout for secret in secrets)

        retired = wingman(tmp_path, "--retire", old_id)
        assert retired.returncode == 0, retired.stderr
        os.kill(gateway.proc.pid, signal.SIGHUP)
        gateway.wait_for(r"key ring reloaded.*\n?.*")
        for _ in range(50):  # the reload is logged after it happened
            reply = register(gateway.url, old_token)
            if reply["type"] == "error":
                break
        assert reply["payload"] == {
            "code": "AUTH_FAILED", "message": "authentication failed: unknown signing key"
        }
        assert register(gateway.url, new_token)["type"] == "ack"
        refuse_active = wingman(tmp_path, "--retire", new_id)
        assert refuse_active.returncode == 1
        assert "active" in refuse_active.stderr
        for secret in secrets + [old_token, new_token]:
            assert secret not in gateway.log
    finally:
        gateway.stop()


def test_token_needs_an_action_and_a_key_ring(tmp_path: Path) -> None:
    nothing = wingman(tmp_path)
    assert nothing.returncode == 2
    assert "give at least one of --generate, --rotate, --retire, --list" in nothing.stderr
    missing = wingman(tmp_path, "--list")
    assert missing.returncode == 1
    assert "no key ring at" in missing.stderr
    bad_ttl = wingman(tmp_path, "--generate", "--ttl", "soon")
    assert bad_ttl.returncode == 2
    assert "not a duration: 'soon'" in bad_ttl.stderr
