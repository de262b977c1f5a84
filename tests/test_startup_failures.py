"""A gateway that cannot start says what and where in one or two lines (no usage
text, no traceback) and exits non-zero: from ``twistd wingman-gateway`` and
from ``wingman gateway run`` and ``start`` alike, real processes each."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path
from typing import Callable, Iterator

import pytest
from twisted.internet.endpoints import quoteStringArgument

from harness.cli_support import wingman
from harness.support import TWISTD, make_pki

# twistd's own first lines, before the gateway says anything.
_TWISTD_BANNER = ("starting up.", "reactor class:")


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def bad_config_key(tmp_path: Path, port: int) -> tuple[list[str], str]:
    config = tmp_path / "gateway.json"
    config.write_text(json.dumps({"port": 3000, "colour": "blue"}))
    return ["--config", str(config)], f"colour: unknown config key in {config}"


def port_in_use(tmp_path: Path, port: int) -> tuple[list[str], str]:
    return (["--port", str(port), "--host", "127.0.0.1"],
            f"cannot listen on tcp:{port}:interface=127.0.0.1: Couldn't listen on 127.0.0.1:{port}: "
            "[Errno 98] Address already in use")


def missing_certificate(tmp_path: Path, port: int) -> tuple[list[str], str]:
    pki = make_pki(tmp_path / "pki")
    missing = tmp_path / "nowhere" / "cert.pem"
    endpoint = (f"ssl:0:interface=127.0.0.1:privateKey={quoteStringArgument(str(pki.key))}"
                f":certKey={quoteStringArgument(str(missing))}")
    return ["--listen", endpoint], f"cannot read {missing}: No such file or directory"


def unreadable_keyring(tmp_path: Path, port: int) -> tuple[list[str], str]:
    keyring = tmp_path / "keys.json"
    keyring.mkdir()  # root reads any file; a directory is unreadable as a key ring for everyone
    return (["--port", "0", "--host", "127.0.0.1", "--auth", "--keyring", str(keyring)],
            f"keyring: cannot use {keyring}: Is a directory")


CASES: dict[str, Callable[[Path, int], tuple[list[str], str]]] = {
    "bad config key": bad_config_key,
    "port in use": port_in_use,
    "missing certificate": missing_certificate,
    "unreadable key ring": unreadable_keyring,
}


def twistd(home: Path, args: list[str]) -> tuple[int, str]:
    done = subprocess.run([TWISTD, "--nodaemon", "--pidfile=", "wingman-gateway", *args],
                          capture_output=True, text=True, timeout=60, cwd=home)
    return done.returncode, done.stdout + done.stderr


def run(home: Path, args: list[str]) -> tuple[int, str]:
    done = wingman(home, "gateway", "run", *args)
    return done.returncode, done.stdout + done.stderr


def start(home: Path, args: list[str]) -> tuple[int, str]:
    done = wingman(home, "gateway", "start", *args)
    assert not (home / "gateway.pid").exists()
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize("command", [twistd, run, start], ids=["twistd", "run", "start"])
@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_a_failed_start_is_one_or_two_clear_lines(
    home: Path, tmp_path: Path, taken_port: int, command: Callable[[Path, list[str]], tuple[int, str]],
    case: str,
) -> None:
    args, reason = CASES[case](tmp_path, taken_port)
    status, output = command(home, args)
    assert status != 0, output
    assert reason in output, output
    assert "Traceback" not in output and "Usage:" not in output and "--help" not in output, output
    said = [line for line in output.splitlines() if line.strip() and not line.endswith(_TWISTD_BANNER)
            and not any(banner in line for banner in _TWISTD_BANNER)]
    assert 1 <= len(said) <= 2, said
