"""Helpers for SSH tests: user keys, an in-memory Conch client against the
gateway's SSH server, and command lines for the real OpenSSH programs."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

from harness.background import stop_process
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from harness.memory import Harness
from twisted.conch.ssh import channel, common, connection, keys, transport, userauth
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.test import iosim

from wingman_gateway.transports.ssh.keys import AuthorizedKeysFile
from wingman_gateway.transports.ssh.server import GatewaySSHFactory

# -- keys ------------------------------------------------------------------------


class UserKey:
    """An ed25519 key pair; ``path`` is the private key file OpenSSH reads."""

    def __init__(self, directory: Path, name: str) -> None:
        private = Ed25519PrivateKey.generate()
        self.key = keys.Key(private)
        self.path = directory / name
        self.path.write_bytes(
            private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.OpenSSH,
                serialization.NoEncryption(),
            )
        )
        self.path.chmod(0o600)
        self.public_line = self.key.public().toString("OPENSSH").decode() + f" {name}@test"
        Path(str(self.path) + ".pub").write_text(self.public_line + "\n")

    def line(self, options: str = "") -> str:
        """Its authorized_keys line, with ``options`` in front."""
        return f"{options} {self.public_line}".strip()


def write_authorized_keys(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


# -- in-memory Conch client ---------------------------------------------------------


class ClientChannel(channel.SSHChannel):
    """A session channel that records what the server sends."""

    name = b"session"

    def __init__(self, stall: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stall = stall  # never give the server more window
        self.out = bytearray()
        self.err = bytearray()
        self.exit_status: int | None = None
        self.open_failure: Any = None
        self.is_open = False
        self.is_closed = False
        self.got_eof = False

    def channelOpen(self, data: bytes) -> None:
        self.is_open = True

    def openFailed(self, reason: Any) -> None:
        self.open_failure = reason

    def dataReceived(self, data: bytes) -> None:
        self.out += data

    def extReceived(self, dataType: int, data: bytes) -> None:
        self.err += data

    def eofReceived(self) -> None:
        self.got_eof = True

    def request_exit_status(self, data: bytes) -> int:
        self.exit_status = struct.unpack(">L", data)[0]
        return 1

    def closed(self) -> None:
        self.is_closed = True

    def lines(self) -> list[dict[str, Any]]:
        """Every whole JSON line received so far, pings left out."""
        got = [json.loads(raw) for raw in bytes(self.out).split(b"\n") if raw.strip()]
        return [m for m in got if m.get("type") != "ping"]

    def take(self) -> list[dict[str, Any]]:
        got = self.lines()
        self.out.clear()
        return got

    def send(self, value: Any) -> None:
        self.write((value if isinstance(value, bytes) else json.dumps(value).encode()) + b"\n")


class ForwardChannel(ClientChannel):
    name = b"direct-tcpip"


class _ClientConnection(connection.SSHConnection):
    def __init__(self, client: "_ClientTransport") -> None:
        super().__init__()
        self.client = client

    def serviceStarted(self) -> None:
        self.client.conn = self

    def adjustWindow(self, channel: Any, bytesToAdd: int) -> None:
        if not getattr(channel, "stall", False):
            super().adjustWindow(channel, bytesToAdd)


class _ClientAuth(userauth.SSHUserAuthClient):
    def __init__(self, user: bytes, instance: Any, key: keys.Key) -> None:
        super().__init__(user, instance)
        self._key = key
        self._offered = False

    def getPublicKey(self) -> Any:
        if self._offered:
            return None
        self._offered = True
        return self._key.public()

    def getPrivateKey(self) -> Any:
        return defer.succeed(self._key)


class _ClientTransport(transport.SSHClientTransport):
    def __init__(self, user: str, key: keys.Key) -> None:
        self.user = user.encode()
        self.key = key
        self.conn: _ClientConnection | None = None
        self.disconnect_reason: Any = None

    def verifyHostKey(self, hostKey: bytes, fingerprint: bytes) -> Any:
        return defer.succeed(True)

    def connectionSecure(self) -> None:
        self.requestService(_ClientAuth(self.user, _ClientConnection(self), self.key))

    def receiveError(self, reasonCode: int, description: bytes) -> None:
        self.disconnect_reason = (reasonCode, description)


class MemorySSH(Harness):
    """The Router of ``Harness`` behind the real SSH server factory, on a Clock."""

    def __init__(self, authorized_keys: Path, listening: list[Any] | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.host_key = keys.Key(Ed25519PrivateKey.generate())
        self.keyfile = AuthorizedKeysFile(authorized_keys)
        self.factory = GatewaySSHFactory(
            self.router, self.host_key, self.keyfile, lambda: listening or [],
            reactor=self.clock, clock=self.clock,
        )
        self.factory.startFactory()
        self.pumps: list[iosim.IOPump] = []

    def login(self, user: str, key: UserKey) -> tuple[_ClientTransport, Any, iosim.IOPump]:
        """A connected client; its ``conn`` is set when the login succeeded."""
        server = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 2222))
        client = _ClientTransport(user, key.key)
        server_io = iosim.FakeTransport(server, isServer=True,
                                        peerAddress=IPv4Address("TCP", "127.0.0.1", 50000))
        client_io = iosim.FakeTransport(client, isServer=False)
        pump = iosim.connect(server, server_io, client, client_io, greet=False)
        self.pumps.append(pump)
        pump.flush()
        return client, server, pump

    def open(self, client: _ClientTransport, pump: iosim.IOPump, chan: ClientChannel,
             data: bytes = b"") -> ClientChannel:
        assert client.conn is not None, "not logged in"
        client.conn.openChannel(chan, data)
        pump.flush()
        return chan

    def subsystem(self, client: _ClientTransport, pump: iosim.IOPump, name: bytes = b"wingman",
                  stall: bool = False, window: int = 131072) -> tuple[ClientChannel, list[Any]]:
        """A session channel running subsystem ``name``; the request's outcome in the list."""
        chan = self.open(client, pump, ClientChannel(stall=stall, localWindow=window))
        outcome: list[Any] = []
        client.conn.sendRequest(chan, b"subsystem", common.NS(name), wantReply=True).addBoth(outcome.append)  # type: ignore[union-attr]
        pump.flush()
        return chan, outcome


# -- real OpenSSH programs ----------------------------------------------------------

SSH_OPTIONS = [
    "-F", "/dev/null",
    "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "BatchMode=yes",
    "-o", "ConnectTimeout=10",
]


def ssh_command(port: int, key: Path, *args: str) -> list[str]:
    """``ssh`` with test options: no config, no known hosts, no prompts, one key."""
    return ["ssh", *SSH_OPTIONS, "-o", "IdentitiesOnly=yes", "-i", str(key), "-p", str(port), *args]


def process_gone(pid: int) -> bool:
    """True once ``pid`` no longer runs (gone, or a zombie nobody reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True
    return state in ("Z", "X")


def environment_without_agent() -> dict[str, str]:
    """The test environment, without an ssh-agent that could offer other keys."""
    return {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}


import queue  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402


class SSHLineNode:
    """A node over the real ``ssh -s HOST wingman``: JSON lines on its stdin/stdout."""

    def __init__(self, port: int, key: Path, user: str = "alice") -> None:
        self.proc = subprocess.Popen(
            ssh_command(port, key, "-s", f"{user}@127.0.0.1", "wingman"),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=environment_without_agent(),
        )
        self.lines: queue.Queue[bytes] = queue.Queue()
        self.stderr = bytearray()
        self.node_id: str | None = None
        self._next = 0
        threading.Thread(target=self._pump_out, daemon=True).start()
        self._err_pump = threading.Thread(target=self._pump_err, daemon=True)
        self._err_pump.start()

    def _pump_out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def _pump_err(self) -> None:
        assert self.proc.stderr is not None
        for chunk in iter(lambda: self.proc.stderr.read1(4096), b""):  # type: ignore[union-attr]
            self.stderr += chunk

    def exit_status(self, timeout: float = 10.0) -> int:
        """Wait for ``ssh`` to exit and for all it wrote to stderr to be read."""
        status = self.proc.wait(timeout)
        self._err_pump.join(timeout)
        return status

    def write(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def send(self, value: dict[str, Any]) -> None:
        self.write(json.dumps(value).encode() + b"\n")

    def recv(self, timeout: float = 10.0) -> dict[str, Any]:
        try:
            return json.loads(self.lines.get(timeout=timeout))
        except queue.Empty:
            raise AssertionError(f"no line within {timeout} s; stderr: {bytes(self.stderr)!r}") from None

    def recv_type(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        for _ in range(1000):
            message = self.recv(max(deadline - time.monotonic(), 0.01))
            if message["type"] == kind:
                return message
            if message["type"] not in ("ping", "presence"):
                raise AssertionError(f"expected {kind}, got {message}")
        raise AssertionError(f"no {kind}")

    def request(self, kind: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        self._next += 1
        message_id = f"s{self._next}"
        body: dict[str, Any] = {"type": kind, "messageId": message_id}
        if payload is not None:
            body["payload"] = payload
        self.send(body)
        deadline = time.monotonic() + 10
        for _ in range(1000):
            reply = self.recv(max(deadline - time.monotonic(), 0.01))
            if reply.get("messageId") == message_id:
                return reply
        raise AssertionError(f"no reply to {message_id}")

    def register(self, name: str) -> dict[str, Any]:
        reply = self.request("register", {"name": name})
        assert reply["type"] == "ack", reply
        self.node_id = reply["payload"]["nodeId"]
        return reply

    def join(self, room: str) -> dict[str, Any]:
        return self.request("join_group", {"groupName": room, "createIfNotExists": True})

    def stop(self) -> int:
        """End the ssh process we started, by pid."""
        return stop_process(self.proc)


import getpass  # noqa: E402

SSHD = "/usr/sbin/sshd"


class SSHServer:
    """A real OpenSSH ``sshd`` on 127.0.0.1 with its own host key and authorized_keys."""

    def __init__(self, directory: Path, port: int, authorized: list[str]) -> None:
        self.port = port
        self.user = getpass.getuser()
        host_key = directory / "sshd_host_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
        write_authorized_keys(directory / "sshd_authorized_keys", *authorized)
        config = directory / "sshd_config"
        config.write_text(
            f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
            f"AuthorizedKeysFile {directory / 'sshd_authorized_keys'}\n"
            f"PidFile {directory / 'sshd.pid'}\n"
            "StrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "AllowTcpForwarding yes\nGatewayPorts no\nX11Forwarding no\nPermitTTY no\n"
            "LogLevel VERBOSE\n"
        )
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # its privilege separation directory
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self.log: list[str] = []
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(15):
            self.stop()
            raise AssertionError(f"sshd did not start: {self.log}")

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line.rstrip("\n"))
            if "Server listening on 127.0.0.1" in line:
                self._ready.set()

    def stop(self) -> None:
        """SIGTERM the sshd we started (its connections' processes end with their clients)."""
        stop_process(self.proc)


def tunnel_ssh_options(key: Path) -> list[str]:
    """``wingman gateway tunnel`` options that make its ssh use only the test's key."""
    options = ["-F", "/dev/null", "-i", str(key)]
    for option in ("StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null", "BatchMode=yes",
                   "IdentitiesOnly=yes", "ConnectTimeout=10"):
        options += ["-o", option]
    return options
