"""Running the real ``twistd wingman-gateway`` process for integration tests."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from websockets.sync.client import ClientConnection, connect

from harness.background import Background
from wingman_gateway import portsfile

TWISTD = str(Path(sys.executable).with_name("twistd"))


def wait_ports_file(process: Background, path: str, timeout: float = 15.0) -> dict[str, Any]:
    """The ``--ports-file`` a gateway ``process`` writes once every listener is bound (bounded wait)."""
    deadline = time.monotonic() + timeout
    while (bound := portsfile.read(path)) is None:
        if time.monotonic() > deadline or process.proc.poll() is not None:
            raise AssertionError(f"gateway wrote no ports file {path}; output:\n{process.output}")
        time.sleep(0.02)
    return bound


class GatewayProcess(Background):
    """A gateway started with ``twistd -n``; its log is collected as it runs, and
    what it bound is read from the ``--ports-file`` it is always given."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        command: list[str] | None = None,
        exact_env: bool = False,
        twistd: Sequence[str] = (),
    ) -> None:
        """``command`` replaces the default ``twistd TWISTD… wingman-gateway ARGS`` line
        (it must end with the gateway's options: ``--ports-file`` is added to it);
        ``twistd`` are options of twistd itself (``--logger``, say)."""
        self.args = args
        self._ports_dir = tempfile.mkdtemp(prefix="wingman-ports-")
        self.ports_file = os.path.join(self._ports_dir, "ports.json")
        command = command or [TWISTD, "--nodaemon", "--pidfile=", *twistd, "wingman-gateway", *args]
        super().__init__([*command, "--ports-file", self.ports_file], env=env, cwd=cwd, exact_env=exact_env)

    @property
    def bound(self) -> dict[str, Any] | None:
        """The ports file's content once every listener is bound, else None."""
        return portsfile.read(self.ports_file)

    @property
    def listeners(self) -> list[dict[str, Any]]:
        """Every bound listener (endpoint, kind, host and port, or path)."""
        return list((self.bound or {}).get("listeners", []))

    @property
    def ports(self) -> list[int]:
        """The TCP/TLS ports, in --listen order (empty until every listener is bound)."""
        return [entry["port"] for entry in self.listeners if "port" in entry]

    @property
    def log(self) -> str:
        return self.output

    def wait_listening(self, count: int = 1, timeout: float = 15.0) -> list[int]:
        """The bound TCP/TLS ports, once the gateway wrote its ports file (bounded wait)."""
        bound = wait_ports_file(self, self.ports_file, timeout)
        ports = self.ports
        assert len(ports) >= count, (ports, bound)
        return ports

    def stop(self, timeout: float = 10.0) -> int:
        try:
            return super().stop(timeout)
        finally:
            shutil.rmtree(self._ports_dir, ignore_errors=True)

    def wait_exit(self, timeout: float = 30.0) -> int:
        try:
            return super().wait_exit(timeout)
        finally:
            shutil.rmtree(self._ports_dir, ignore_errors=True)

    @property
    def port(self) -> int:
        return self.wait_listening()[0]

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

def start_gateway(
    *args: str, env: dict[str, str] | None = None, wait: bool = True, twistd: Sequence[str] = ()
) -> GatewayProcess:
    """Start a gateway on a free loopback port (unless args give listeners or a
    config file); wait until it listens unless told not to."""
    argv = list(args)
    if not any(a.startswith(("--listen", "--port", "--config")) for a in argv):
        argv = ["--listen", "tcp:0:interface=127.0.0.1", *argv]
    gateway = GatewayProcess(argv, env=env, twistd=twistd)
    if wait:
        gateway.wait_listening()
    return gateway


class Node:
    """A test node speaking protocol v1 through the independent ``websockets`` client."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        # Entered like a context manager (closed by close()), as websockets asks.
        self.ws: ClientConnection = connect(url, open_timeout=10, **kwargs).__enter__()
        self.node_id: str | None = None
        self._next_id = 0

    def send(self, envelope: dict[str, Any]) -> None:
        self.ws.send(json.dumps(envelope))

    def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        return json.loads(self.ws.recv(timeout))

    def recv_type(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        """Next envelope of ``kind``, skipping heartbeat pings and presence notices."""
        deadline = time.monotonic() + timeout
        while True:
            message = self.recv(max(deadline - time.monotonic(), 0.01))
            if message["type"] == kind:
                return message
            if message["type"] not in ("ping", "presence"):
                raise AssertionError(f"expected {kind}, got {message}")

    def request(self, kind: str, payload: dict[str, Any] | None = None, **envelope: Any) -> dict[str, Any]:
        """Send with a fresh messageId and return the ack or error that answers it."""
        self._next_id += 1
        message_id = f"m{self._next_id}"
        body = {"type": kind, "messageId": message_id, **envelope}
        if payload is not None:
            body["payload"] = payload
        self.send(body)
        deadline = time.monotonic() + 5
        while True:
            reply = self.recv(max(deadline - time.monotonic(), 0.01))
            if reply.get("messageId") == message_id:
                return reply

    def register(self, name: str, **extra: Any) -> dict[str, Any]:
        reply = self.request("register", {"name": name, **extra})
        if reply["type"] == "ack":
            self.node_id = reply["payload"]["nodeId"]
        return reply

    def join(self, room: str, create: bool = True) -> dict[str, Any]:
        return self.request("join_group", {"groupName": room, "createIfNotExists": create})

    def close(self) -> None:
        self.ws.close()


# --- helpers for protocol integration tests --------------------------------

import contextlib  # noqa: E402
import socket  # noqa: E402
import urllib.error  # noqa: E402
import urllib.request  # noqa: E402
from typing import Callable, Iterator  # noqa: E402

from websockets.exceptions import ConnectionClosed  # noqa: E402

# Never route test HTTP through a proxy from the environment: loopback only.
_http = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``predicate`` (bounded in time) and return its first truthy value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@contextlib.contextmanager
def running_gateway(*args: str, env: dict[str, str] | None = None) -> Iterator[GatewayProcess]:
    """A gateway that is stopped (by its pid) however the block ends."""
    gateway = start_gateway(*args, env=env)
    try:
        yield gateway
    finally:
        gateway.stop()


def http_get(
    gateway: GatewayProcess, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], str]:
    """GET ``path`` on the gateway's loopback port: (status, headers, body text), 4xx included."""
    request = urllib.request.Request(f"http://127.0.0.1:{gateway.port}{path}", headers=headers or {})
    try:
        with _http.open(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read().decode("utf-8")
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), error.read().decode("utf-8")


def health(gateway: GatewayProcess) -> dict[str, Any]:
    """The public /health report (must answer 200)."""
    status, _, body = http_get(gateway, "/health")
    assert status == 200, body
    return json.loads(body)


def wait_totals(gateway: GatewayProcess, nodes: int, groups: int, timeout: float = 10.0) -> dict[str, Any]:
    """Wait until /health reports exactly these node and room counts (disconnects are async)."""
    def reached() -> dict[str, Any] | None:
        stats = health(gateway)["stats"]
        return stats if (stats["totalNodes"], stats["totalGroups"]) == (nodes, groups) else None

    return wait_until(reached, timeout, f"/health to show {nodes} nodes and {groups} rooms")


class NodePool:
    """Opens Nodes to one gateway and closes every one of them at the end of a test."""

    def __init__(self, gateway: GatewayProcess) -> None:
        self.gateway = gateway
        self.nodes: list[Node] = []

    def __call__(self, name: str | None = None, room: str | None = None, **extra: Any) -> Node:
        """A connected Node; registered as ``name`` and joined to ``room`` when given."""
        node = Node(self.gateway.url)
        self.nodes.append(node)
        if name is not None:
            reply = node.register(name, **extra)
            assert reply["type"] == "ack", reply
        if room is not None:
            reply = node.join(room)
            assert reply["type"] == "ack", reply
        return node

    def close_all(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(OSError, ConnectionClosed):
                node.close()
        self.nodes.clear()


def recv_text(node: Node, timeout: float = 5.0, skip: tuple[str, ...] = ("ping",)) -> str | bytes:
    """The next raw frame, skipping the gateway's heartbeat pings (bounded)."""
    deadline = time.monotonic() + timeout
    for _ in range(1000):
        raw = node.ws.recv(max(deadline - time.monotonic(), 0.01))
        if json.loads(raw).get("type") not in skip:
            return raw
    raise AssertionError("only heartbeat frames received")


def reply_to(node: Node, message_id: Any, timeout: float = 5.0) -> dict[str, Any]:
    """The reply carrying ``message_id`` (bounded); other envelopes fail the test."""
    deadline = time.monotonic() + timeout
    for _ in range(1000):
        reply = node.recv(max(deadline - time.monotonic(), 0.01))
        if reply["type"] in ("ping", "presence"):
            continue
        assert reply.get("messageId") == message_id and type(reply.get("messageId")) is type(
            message_id
        ), f"expected the reply to {message_id!r}, got {reply}"
        return reply
    raise AssertionError("only heartbeat frames received")


def expect_error(reply: dict[str, Any], code: str, message: str | None = None) -> dict[str, Any]:
    """Assert ``reply`` is an error with ``code`` (and ``message``); return its payload."""
    assert reply["type"] == "error", reply
    payload = reply["payload"]
    assert payload["code"] == code, reply
    if message is not None:
        assert payload["message"] == message, reply
    assert isinstance(reply["timestamp"], int)
    return payload


def expect_silence(node: Node, seconds: float = 0.3, ignore: tuple[str, ...] = ("ping",)) -> None:
    """Assert nothing but heartbeat pings arrives on ``node`` within ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        try:
            raw = node.ws.recv(left)
        except TimeoutError:
            return
        message = json.loads(raw)
        assert message.get("type") in ignore, f"expected nothing, got {message}"


def expect_closed(node: Node, timeout: float = 5.0) -> tuple[int | None, str | None]:
    """Read until the gateway closes the connection; its (close code, reason)."""
    deadline = time.monotonic() + timeout
    for _ in range(1000):
        try:
            message = json.loads(node.ws.recv(max(deadline - time.monotonic(), 0.01)))
        except ConnectionClosed as closed:
            if closed.rcvd is None:
                return None, None
            return closed.rcvd.code, closed.rcvd.reason
        assert message["type"] in ("ping", "presence"), f"expected a close, got {message}"
    raise AssertionError("connection did not close")


def abort(node: Node) -> None:
    """Drop the TCP connection without a WebSocket closing handshake."""
    node.ws.socket.shutdown(socket.SHUT_RDWR)


def assert_usable(node: Node) -> None:
    """The connection still answers: a ping gets its pong."""
    node._next_id += 1
    message_id = f"alive{node._next_id}"
    node.send({"type": "ping", "messageId": message_id})
    reply = reply_to(node, message_id)
    assert reply["type"] == "pong", reply


def assert_delivers(sender: Node, receiver: Node, room: str) -> dict[str, Any]:
    """A broadcast from ``sender`` to ``room`` (id or name) reaches ``receiver``."""
    marker = {"check": f"alive-{time.monotonic_ns()}"}
    sender._next_id += 1
    message_id = f"bc{sender._next_id}"
    sender.send({"type": "broadcast", "messageId": message_id, "payload": {"groupId": room, "message": marker}})
    ack = reply_to(sender, message_id)
    assert ack["type"] == "ack", ack
    got = receiver.recv_type("broadcast")
    assert got["payload"] == marker and got["fromNodeId"] == sender.node_id, got
    return got


# --- helpers for operational tests (processes, TLS, memory) ----------------

import ssl  # noqa: E402


def free_tcp_port() -> int:
    """A loopback port that was free a moment ago (for config files that name a port)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get_url(
    url: str, context: ssl.SSLContext | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """GET any loopback URL (http or https): (status, decoded JSON body), 4xx included."""
    handlers: list[Any] = [urllib.request.ProxyHandler({})]
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    opener = urllib.request.build_opener(*handlers)
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with opener.open(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def wait_healthy(url: str, context: ssl.SSLContext | None = None, timeout: float = 15.0) -> Any:
    """Poll ``url`` (a /health address) until it answers 200; bounded in time."""
    def answered() -> Any:
        try:
            status, body = get_url(url, context)
        except OSError:
            return None
        return body if status == 200 else None

    return wait_until(answered, timeout, f"{url} to answer")


def rss_kib(pid: int) -> int:
    """Resident memory of process ``pid`` in KiB (VmRSS from /proc)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


# TLS material and hand-made WebSocket connections for service tests.

import base64  # noqa: E402
import datetime  # noqa: E402
import hashlib  # noqa: E402
import ipaddress  # noqa: E402
import struct  # noqa: E402

import attrs  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402
from twisted.internet.endpoints import quoteStringArgument  # noqa: E402


@attrs.frozen
class Pki:
    """A test CA and a server certificate it signed, as PEM files."""

    ca: Path
    key: Path
    cert: Path

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts only the test CA."""
        context = ssl.create_default_context(cafile=str(self.ca))
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
        return context

    def endpoint(self) -> str:
        return (
            "ssl:0:interface=127.0.0.1"
            f":privateKey={quoteStringArgument(str(self.key))}"
            f":certKey={quoteStringArgument(str(self.cert))}"
        )


LOCAL_NAMES: list[x509.GeneralName] = [
    x509.DNSName("localhost"),
    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
]
WRONG_NAMES: list[x509.GeneralName] = [x509.DNSName("wrong.example")]


def _ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    now = datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_pki(directory: Path, names: list[x509.GeneralName] | None = None) -> Pki:
    """A fresh CA and a server certificate it signed for ``names`` (the SANs;
    default: localhost and 127.0.0.1)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = _ca(f"wingman test CA {directory.name}")
    now = datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wingman test server")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names or LOCAL_NAMES), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pki = Pki(ca=directory / "ca.pem", key=directory / "server.key", cert=directory / "server.pem")
    pki.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    pki.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    pki.key.chmod(0o600)
    return pki



def raw_websocket(port: int, receive_buffer: int) -> socket.socket:
    """A WebSocket opened by hand on a socket with a tiny receive buffer, so it can stall."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    response = b""
    for _ in range(4096):
        if response.endswith(b"\r\n\r\n"):
            break
        response += sock.recv(1)  # byte by byte: nothing past the headers is consumed
    status, *lines = response.decode("latin-1").strip().split("\r\n")
    assert status.startswith("HTTP/1.1 101"), response
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    accept = base64.b64encode(
        hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
    ).decode()
    assert headers["sec-websocket-accept"] == accept, headers
    return sock


def send_text_frame(sock: socket.socket, message: dict[str, Any]) -> None:
    """One masked client text frame (payloads under 64 KiB)."""
    data = json.dumps(message).encode()
    assert len(data) < 65536
    mask = os.urandom(4)
    length = struct.pack("!B", 0x80 | len(data)) if len(data) < 126 else struct.pack("!BH", 0x80 | 126, len(data))
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    sock.sendall(b"\x81" + length + mask + masked)


def assert_refused_at_startup(gateway: GatewayProcess, message: str) -> None:
    """The gateway exits non-zero before listening, and says ``message``."""
    assert gateway.wait_exit() != 0, gateway.log
    assert message in gateway.log
    assert "listening on" not in gateway.log
