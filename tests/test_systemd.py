"""The gateway under systemd: the unit files, socket activation, sd_notify.

Real components only: ``systemd-analyze verify`` checks the committed units,
``systemd-socket-activate`` hands the real twistd process its socket, and the
notifications are read from a real datagram socket named by NOTIFY_SOCKET,
as systemd itself would.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock

from harness.support import TWISTD, GatewayProcess, Node, expect_closed, free_tcp_port, get_url
from wingman_gateway.auth import KeyRing
from wingman_gateway.systemd import SystemdNotifier, sd_notify, watchdog_interval

UNITS = Path(__file__).resolve().parent.parent / "systemd"
SERVICE, SOCKET = UNITS / "wingman-gateway.service", UNITS / "wingman-gateway.socket"
LOOPBACK = "tcp:0:interface=127.0.0.1"
INSTALLED_TWISTD = "/opt/wingman/bin/twistd"
_http = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only, never a proxy


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is missing: install Debian's systemd package (make deps)"
    return path


def unit_values(path: Path, key: str) -> list[str]:
    """Every value of ``key`` in a unit file, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    return [line.split("=", 1)[1].strip() for line in text.splitlines() if line.startswith(key + "=")]


# --- systemd-analyze verify ---------------------------------------------------


def system_root(root: Path) -> Path:
    """A root holding this host's system units, ours installed unchanged in
    /etc/systemd/system, and every program they run where they expect it:
    /opt/wingman/bin/twistd is a copy of the venv's real twistd."""
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    for unit in (SOCKET, SERVICE):
        shutil.copy2(unit, root / "etc/systemd/system" / unit.name)
    for top in ("bin", "sbin", "lib"):  # Debian's merged /usr
        if Path("/", top).is_symlink():
            link = os.readlink(Path("/", top))
            (root / link.lstrip("/")).mkdir(parents=True, exist_ok=True)
            (root / top).symlink_to(link)
    for command in unit_values(SERVICE, "ExecStart") + unit_values(SERVICE, "ExecReload"):
        program = command.split()[0]
        source = TWISTD if program == INSTALLED_TWISTD else program
        target = root / program.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    return root


def verify(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("systemd-analyze"), "verify", "--man=no", f"--root={root}", SOCKET.name, SERVICE.name],
        capture_output=True, text=True, timeout=60,
    )


def test_units_verify_without_a_single_warning(tmp_path: Path) -> None:
    result = verify(system_root(tmp_path / "root"))
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_verify_is_not_vacuous(tmp_path: Path) -> None:
    """The same check fails without twistd at its path, and reports a bad setting."""
    root = system_root(tmp_path / "root")
    (root / INSTALLED_TWISTD.lstrip("/")).unlink()
    with open(root / "etc/systemd/system" / SOCKET.name, "a") as unit:
        unit.write("[Socket]\nNoDelay=perhaps\n")
    result = verify(root)
    assert result.returncode != 0, result
    assert "/opt/wingman/bin/twistd is not executable" in result.stderr, result.stderr
    assert "Failed to parse boolean value, ignoring: perhaps" in result.stderr, result.stderr


def test_socket_and_service_agree() -> None:
    """The socket's name is the one the service adopts, and the socket starts it."""
    assert unit_values(SOCKET, "Service") == [SERVICE.name]
    assert unit_values(SOCKET, "FileDescriptorName") == ["ws"]
    assert "systemd:domain=INET6:name=ws" in shlex.split(unit_values(SERVICE, "ExecStart")[0])
    assert unit_values(SERVICE, "Type") == ["notify"]


# --- socket activation ----------------------------------------------------------


class ActivatedGateway(GatewayProcess):
    """A gateway started through another program (here systemd-socket-activate);
    the log reading is GatewayProcess's, the command line is ours."""

    def __init__(self, command: list[str]) -> None:
        super().__init__(command, command=command)


def command_of(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
        return [os.fsdecode(arg) for arg in cmdline.read().split(b"\0")]


def unit_command(keyring: Path) -> list[str]:
    """The service's own ExecStart, runnable here: the venv's twistd, a temporary
    key ring, and an IPv4 socket (the test listens on 127.0.0.1 only)."""
    argv = shlex.split(unit_values(SERVICE, "ExecStart")[0])
    assert argv[0] == INSTALLED_TWISTD
    swap = {
        INSTALLED_TWISTD: TWISTD,
        "/var/lib/wingman-gateway/keys.json": str(keyring),
        "systemd:domain=INET6:name=ws": "systemd:domain=INET:name=ws",
    }
    assert set(swap) <= set(argv), argv
    return [swap.get(arg, arg) for arg in argv]


# What systemd installs for MemoryDenyWriteExecute=yes (src/shared/seccomp-util.c):
# a seccomp filter refusing memory that is writable and executable, or made
# executable later. This launcher installs the same filter, then execs its
# arguments; the filter (and no_new_privs) holds across exec, as under systemd.
DENY_WRITE_EXECUTE = """
import ctypes, ctypes.util, errno, mmap, os, sys
lib = ctypes.CDLL(ctypes.util.find_library("seccomp") or "libseccomp.so.2")
class Compare(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("a", ctypes.c_uint64), ("b", ctypes.c_uint64)]
lib.seccomp_init.restype = ctypes.c_void_p
lib.seccomp_init.argtypes = [ctypes.c_uint32]
lib.seccomp_rule_add_array.argtypes = [
    ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(Compare)]
lib.seccomp_load.argtypes = [ctypes.c_void_p]
ALLOW, REFUSE, MASKED_EQ, SHM_EXEC = 0x7FFF0000, 0x00050000 | errno.EPERM, 7, 0o100000
context = lib.seccomp_init(ALLOW)
X, WX = mmap.PROT_EXEC, mmap.PROT_EXEC | mmap.PROT_WRITE
for call, mask in (("mmap", WX), ("mprotect", X), ("pkey_mprotect", X), ("shmat", SHM_EXEC)):
    number = lib.seccomp_syscall_resolve_name(call.encode())
    rule = Compare(2, MASKED_EQ, mask, mask)
    assert lib.seccomp_rule_add_array(context, REFUSE, number, 1, ctypes.byref(rule)) == 0, call
assert lib.seccomp_load(context) == 0, "cannot load the seccomp filter"
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | WX)
    sys.exit("the filter lets write+execute memory through")
except PermissionError:
    pass
os.execv(sys.argv[1], sys.argv[1:])
"""


def status_of(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        return dict(line.rstrip("\n").split(":\t", 1) for line in status if ":\t" in line)


@pytest.mark.parametrize("deny_write_execute", [False, True], ids=["plain", "MemoryDenyWriteExecute"])
def test_socket_activation_starts_the_gateway_on_the_first_connection(
    tmp_path: Path, deny_write_execute: bool
) -> None:
    """The unit's own command line, handed its socket by systemd-socket-activate;
    also under the unit's MemoryDenyWriteExecute=yes, to show the gateway copes."""
    port = free_tcp_port()
    keyring = tmp_path / "keys.json"
    launcher = [sys.executable, "-c", DENY_WRITE_EXECUTE] if deny_write_execute else []
    command = [
        *launcher, tool("systemd-socket-activate"), "--listen", f"127.0.0.1:{port}",
        "--fdname=" + unit_values(SOCKET, "FileDescriptorName")[0], *unit_command(keyring),
    ]
    gateway = ActivatedGateway(command)
    try:
        gateway.wait_for(rf"Listening on 127\.0\.0\.1:{port} as 3\.")
        # Without --accept the activator holds the socket and waits: no gateway yet.
        assert command_of(gateway.proc.pid)[0].endswith("systemd-socket-activate")
        assert not gateway.ports and not keyring.exists()

        # The first connection waits in the backlog while the activator execs twistd.
        with _http.open(f"http://127.0.0.1:{port}/health", timeout=15) as response:
            assert json.load(response)["status"] == "healthy"
        gateway.wait_for(rf"listening on systemd:domain=INET:name=ws \(127\.0\.0\.1:{port}\)")
        assert TWISTD in command_of(gateway.proc.pid)[:2]  # the same process, exec'd in place
        assert gateway.ports == [port]
        if deny_write_execute:  # the launcher's filter still holds in the gateway
            ours, its = status_of(os.getpid()), status_of(gateway.proc.pid)
            assert its["NoNewPrivs"] == "1"
            assert int(its["Seccomp_filters"]) == int(ours["Seccomp_filters"]) + 1

        # Nodes meet through the inherited socket, with a token from the key ring
        # the gateway created on its first start.
        token = KeyRing.open(keyring, wall_clock()).sign("tester", 600)
        nodes = [Node(f"ws://127.0.0.1:{port}/ws") for _ in range(2)]
        try:
            for name, node in zip(("alice", "bob"), nodes):
                assert node.register(name, token=token)["type"] == "ack"
                assert node.join("ops")["type"] == "ack"
            nodes[0].request("broadcast", {"groupId": "ops", "message": {"text": "hi"}})
            got = nodes[1].recv_type("broadcast")
            assert got["payload"] == {"text": "hi"} and got["fromName"] == "alice"
        finally:
            for node in nodes:
                node.close()
    finally:
        code = gateway.stop()
    assert code == -signal.SIGTERM, gateway.log
    assert "Traceback" not in gateway.log, gateway.log


def wall_clock() -> Clock:
    clock = Clock()
    clock.advance(time.time())
    return clock


# --- sd_notify: the sender --------------------------------------------------------


@pytest.fixture
def notify_dir() -> Iterator[Path]:
    """A short directory (AF_UNIX paths are limited to 108 bytes)."""
    directory = tempfile.mkdtemp(prefix="wg-sd-")
    try:
        yield Path(directory)
    finally:
        shutil.rmtree(directory)


def datagram_socket(address: str | bytes) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(5)
    return sock


def test_sd_notify_reaches_an_abstract_socket() -> None:
    name = f"wingman-gateway-test-{os.getpid()}-{secrets.token_hex(4)}"
    with datagram_socket(b"\0" + name.encode()) as manager:
        assert sd_notify("READY=1\nSTATUS=up", {"NOTIFY_SOCKET": "@" + name})
        assert manager.recv(4096) == b"READY=1\nSTATUS=up"


def test_sd_notify_reaches_a_socket_file(notify_dir: Path) -> None:
    path = str(notify_dir / "notify")
    with datagram_socket(path) as manager:
        assert sd_notify("STOPPING=1", {"NOTIFY_SOCKET": path})
        assert manager.recv(4096) == b"STOPPING=1"


def test_sd_notify_without_a_manager_sends_nothing(notify_dir: Path) -> None:
    assert not sd_notify("READY=1", {})
    assert not sd_notify("READY=1", {"NOTIFY_SOCKET": ""})
    assert not sd_notify("READY=1", {"NOTIFY_SOCKET": "relative/path"})
    # A manager that went away costs a log line, never an exception.
    assert not sd_notify("READY=1", {"NOTIFY_SOCKET": str(notify_dir / "gone")})


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}, 42) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "400000", "WATCHDOG_PID": "42"}, 42) == 0.2
    assert watchdog_interval({"WATCHDOG_USEC": "400000", "WATCHDOG_PID": "43"}, 42) is None
    assert watchdog_interval({}, 42) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, 42) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}, 42) is None


class FakePort:
    def __init__(self, port: int) -> None:
        self.address = IPv4Address("TCP", "127.0.0.1", port)

    def getHost(self) -> IPv4Address:
        return self.address


def test_notifier_on_a_clock(notify_dir: Path) -> None:
    """READY only after every listener is bound and the reactor runs; watchdog
    every WATCHDOG_USEC/2; STOPPING once; silence after stopping."""
    path = str(notify_dir / "notify")
    clock = Clock()
    listening: defer.Deferred[list[FakePort]] = defer.Deferred()
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"}
    with datagram_socket(path) as manager:
        manager.setblocking(False)

        def received() -> list[bytes]:
            got = []
            while True:
                try:
                    got.append(manager.recv(4096))
                except BlockingIOError:
                    return got

        notifier = SystemdNotifier(lambda: listening, clock, env, pid=4242)  # type: ignore[arg-type]
        notifier.startService()
        assert received() == [b"WATCHDOG=1"]
        clock.advance(0.999)
        assert received() == []
        clock.advance(0.001)
        assert received() == [b"WATCHDOG=1"]

        listening.callback([FakePort(3000), FakePort(3001)])
        assert received() == []  # not before the reactor runs
        clock.advance(0)
        assert received() == [b"READY=1\nSTATUS=serving on 127.0.0.1:3000, 127.0.0.1:3001\nMAINPID=4242"]

        notifier.stopping()
        notifier.stopService()
        assert received() == [b"STOPPING=1\nSTATUS=shutting down: closing client connections"]
        clock.advance(10)
        assert received() == []


def test_no_notifier_outside_systemd() -> None:
    assert SystemdNotifier.from_environment(defer.Deferred, Clock(), {}) is None


# --- sd_notify: the real gateway ----------------------------------------------------


def next_state(
    manager: socket.socket, wanted: str, gateway: GatewayProcess, timeout: float = 15.0
) -> dict[str, str]:
    """The next notification carrying ``wanted`` (e.g. READY=1), skipping others."""
    deadline = time.monotonic() + timeout
    while True:
        manager.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            datagram = manager.recv(4096).decode()
        except TimeoutError:
            raise AssertionError(f"no {wanted} within {timeout}s; log:\n{gateway.log}") from None
        if wanted in datagram.split("\n"):
            return dict(line.split("=", 1) for line in datagram.split("\n"))


def test_ready_when_every_listener_accepts_then_watchdog_pings(notify_dir: Path) -> None:
    path = str(notify_dir / "notify")
    with datagram_socket(path) as manager:
        gateway = GatewayProcess(
            ["--listen", LOOPBACK, "--listen", "tcp:port=0:interface=127.0.0.1"],
            env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"},
        )
        try:
            ready = next_state(manager, "READY=1", gateway)
            # At this instant both listeners accept connections and answer.
            ports = [int(port) for port in re.findall(r"127\.0\.0\.1:(\d+)", ready["STATUS"])]
            assert len(ports) == 2, ready
            for port in ports:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                assert get_url(f"http://127.0.0.1:{port}/health")[0] == 200
            assert ready["MAINPID"] == str(gateway.proc.pid)
            assert sorted(gateway.wait_listening(2)) == sorted(ports)
            # And the gateway's own log says it listened before it said ready.
            gateway.wait_for("told systemd the gateway is ready")
            lines = gateway.log.splitlines()
            ready_at = [i for i, line in enumerate(lines) if "told systemd the gateway is ready" in line]
            bound_at = [i for i, line in enumerate(lines) if "wingman-gateway listening on" in line]
            assert len(ready_at) == 1 and len(bound_at) == 2, gateway.log
            assert max(bound_at) < ready_at[0], gateway.log

            # WATCHDOG_USEC=400000: a ping every 0.2 s, and never a second READY.
            states: list[str] = []
            until = time.monotonic() + 1.2
            while (left := until - time.monotonic()) > 0:
                manager.settimeout(left)
                try:
                    states.append(manager.recv(4096).decode())
                except TimeoutError:
                    break
            assert set(states) == {"WATCHDOG=1"}, states
            assert 4 <= len(states) <= 9, states
        finally:
            gateway.stop()


def test_stopping_is_sent_before_clients_are_closed(notify_dir: Path) -> None:
    path = str(notify_dir / "notify")
    with datagram_socket(path) as manager:
        gateway = GatewayProcess(["--listen", LOOPBACK], env={"NOTIFY_SOCKET": path})
        try:
            next_state(manager, "READY=1", gateway)
            node = Node(gateway.url)
            assert node.register("alice")["type"] == "ack"
            os.kill(gateway.proc.pid, signal.SIGTERM)
            try:
                assert expect_closed(node)[0] == 1001
            finally:
                node.close()
            # STOPPING=1 went out before the close frame, so it is already queued.
            manager.setblocking(False)
            try:
                stopping = manager.recv(4096).decode()
            except BlockingIOError:
                raise AssertionError("clients were closed before STOPPING=1 was sent") from None
            assert stopping.split("\n")[0] == "STOPPING=1", stopping
            assert gateway.wait_exit() == -signal.SIGTERM, gateway.log
        finally:
            gateway.stop()


def test_sighup_reload_is_announced_and_never_kills(notify_dir: Path) -> None:
    """`systemctl reload` sends SIGHUP: RELOADING=1, then READY=1; the gateway keeps serving.

    Without --keyring there is nothing to reload, and SIGHUP must not end the process.
    """
    path = str(notify_dir / "notify")
    with datagram_socket(path) as manager:
        gateway = GatewayProcess(["--listen", LOOPBACK], env={"NOTIFY_SOCKET": path})
        try:
            next_state(manager, "READY=1", gateway)
            node = Node(gateway.url)
            assert node.register("alice")["type"] == "ack"
            os.kill(gateway.proc.pid, signal.SIGHUP)
            reloading = next_state(manager, "RELOADING=1", gateway)
            assert int(reloading["MONOTONIC_USEC"]) > 0
            assert next_state(manager, "READY=1", gateway)["STATUS"] == "reloaded"
            gateway.wait_for("SIGHUP: nothing to reload")
            assert gateway.proc.poll() is None
            assert node.request("ping")["type"] == "pong"
            node.close()
        finally:
            gateway.stop()
