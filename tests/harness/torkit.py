"""A real tor for tests, offline (``DisableNetwork 1``), and a control client of our own.

The control client speaks tor's control protocol over the socket by itself
(cookie authentication, ``GETINFO``), independent of txtorcon, and the
onion address is computed here from the key file with plain ed25519
arithmetic, independent of the gateway's code.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import socket
import time
from pathlib import Path

from harness.background import Background

TOR = shutil.which("tor") or "/usr/bin/tor"
NO_FILE = "/nonexistent/torrc"  # tor reads no torrc, only the options given (not /etc/tor/torrc)


class OfflineTor(Background):
    """``tor`` with a private data directory and a control socket, never touching the network."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        self.control_socket = directory / "control"
        super().__init__([
            TOR, "--defaults-torrc", NO_FILE, "-f", NO_FILE, "--ignore-missing-torrc",
            "DataDirectory", str(directory), "ControlPort", f"unix:{self.control_socket}",
            "CookieAuthentication", "1", "DisableNetwork", "1", "SocksPort", "0",
            "Log", "notice stdout",
        ])
        self.wait_for(r"Opening Control listener on", timeout=30)
        wait_for_socket(self.control_socket)

    @property
    def endpoint(self) -> str:
        return f"unix:{self.control_socket}"


def wait_for_socket(path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.socket(socket.AF_UNIX) as probe:
                probe.connect(str(path))
                return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"no control socket at {path}")
            time.sleep(0.1)


class Control:
    """A second controller on tor's control socket (cookie authentication)."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(10)
        self.sock.connect(str(path))
        self.reader = self.sock.makefile("rb")
        info = self.command("PROTOCOLINFO 1")
        cookie_file = next(line.split('COOKIEFILE="', 1)[1].split('"', 1)[0]
                           for line in info if 'COOKIEFILE="' in line)
        cookie = Path(cookie_file).read_bytes().hex()
        self.command(f"AUTHENTICATE {cookie}")

    def command(self, line: str) -> list[str]:
        """The reply lines (status and separator stripped); AssertionError on a non-250 reply."""
        self.sock.sendall(line.encode("ascii") + b"\r\n")
        lines: list[str] = []
        while True:
            raw = self.reader.readline().decode("ascii").rstrip("\r\n")
            assert raw, f"tor closed the control connection after {line.split()[0]}"
            status, kind, text = raw[:3], raw[3:4], raw[4:]
            assert status == "250", f"{line.split()[0]}: {raw}"
            lines.append(text)
            if kind == "+":  # a data block, ended by a lone "."
                while (data := self.reader.readline().decode("ascii").rstrip("\r\n")) != ".":
                    lines.append(data)
            elif kind == " ":
                return lines

    def detached(self) -> set[str]:
        """Service ids of ``GETINFO onions/detached``."""
        lines = self.command("GETINFO onions/detached")
        ids = {line.split("=", 1)[1] for line in lines if line.startswith("onions/detached=")}
        ids |= {line for line in lines if "=" not in line and line != "OK"}
        return {i for i in ids if i}

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


# -- the v3 address from an ED25519-V3 key, with plain ed25519 arithmetic ------------

_P = 2**255 - 19
_D = -121665 * pow(121666, _P - 2, _P) % _P
_BASE = (15112221349535400772501151409588531511454012693041857206046113283949847762202,
         46316835694926478169428394003475163141307993866256225615783033603165251855960)


def _add(p: tuple[int, int], q: tuple[int, int]) -> tuple[int, int]:
    (x1, y1), (x2, y2) = p, q
    t = _D * x1 * x2 * y1 * y2 % _P
    x3 = (x1 * y2 + x2 * y1) * pow(1 + t, _P - 2, _P) % _P
    y3 = (y1 * y2 + x1 * x2) * pow(1 - t, _P - 2, _P) % _P
    return x3, y3


def onion_address(key_text: str) -> str:
    """``ED25519-V3:BASE64`` (expanded secret key) -> the 56-character v3 service id."""
    kind, blob = key_text.strip().split(":", 1)
    assert kind == "ED25519-V3"
    scalar = int.from_bytes(base64.b64decode(blob)[:32], "little")
    point, result = _BASE, (0, 1)
    while scalar:
        if scalar & 1:
            result = _add(result, point)
        point, scalar = _add(point, point), scalar >> 1
    x, y = result
    public = (y | (x & 1) << 255).to_bytes(32, "little")
    checksum = hashlib.sha3_256(b".onion checksum" + public + b"\x03").digest()[:2]
    return base64.b32encode(public + checksum + b"\x03").decode("ascii").lower()
