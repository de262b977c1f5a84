"""Operational tests of the running service: TLS, startup failures, config
files, TCP_NODELAY, heartbeat, slow consumers and graceful shutdown."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import pytest_twisted
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol, connectWS
from twisted.internet import defer, reactor
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.protocols.tls import TLSMemoryBIOProtocol
from websockets.exceptions import ConnectionClosed

from harness.support import (
    assert_refused_at_startup,
    GatewayProcess,
    Node,
    expect_closed,
    expect_error,
    free_tcp_port,
    get_url,
    make_pki,
    raw_websocket,
    rss_kib,
    send_text_frame,
    start_gateway,
    wait_healthy,
    wait_until,
)
from wingman_gateway.tap import Options, makeService

LOOPBACK = "tcp:0:interface=127.0.0.1"


# --- fixtures and helpers ----------------------------------------------------


@pytest.fixture
def connect() -> Iterator[Callable[..., Node]]:
    """Opens Nodes (registered when given a name) and closes them all at the end."""
    opened: list[Node] = []

    def open_node(url: str, name: str | None = None, **kwargs: Any) -> Node:
        node = Node(url, **kwargs)
        opened.append(node)
        if name is not None:
            reply = node.register(name)
            assert reply["type"] == "ack", reply
        return node

    yield open_node
    for node in opened:
        with contextlib.suppress(OSError, ConnectionClosed):
            node.close()


def write_config(directory: Path, values: dict[str, Any] | str) -> Path:
    path = directory / "gateway.json"
    path.write_text(values if isinstance(values, str) else json.dumps(values))
    return path


def health_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/health"


def broadcast_between(sender: Node, receiver: Node, room: str, message: Any, recipients: int = 1) -> None:
    """``sender`` broadcasts to ``room``; ``receiver`` gets it exactly, from ``sender``."""
    ack = sender.request("broadcast", {"groupId": room, "message": message})
    assert ack["type"] == "ack" and ack["payload"]["recipients"] == recipients, ack
    got = receiver.recv_type("broadcast")
    assert got["payload"] == message, got
    assert got["fromNodeId"] == sender.node_id and got["groupName"] == room, got


# --- TLS ---------------------------------------------------------------------


def test_tls_listener_verified_broadcast_and_health(launch, connect, tmp_path: Path) -> None:
    """Over ssl: clients verifying against the test CA register, broadcast, read /health."""
    pki = make_pki(tmp_path)
    gateway = launch("--listen", pki.endpoint())
    url = f"wss://127.0.0.1:{gateway.port}/ws"
    context = pki.client_context()

    # Verification is really on: a client trusting only the system roots refuses the server.
    with pytest.raises(ssl.SSLCertVerificationError):
        Node(url, ssl=ssl.create_default_context())

    alice = connect(url, "alice", ssl=context)
    bob = connect(url, "bob", ssl=context)
    assert alice.join("tls-room")["type"] == "ack"
    assert bob.join("tls-room")["type"] == "ack"
    broadcast_between(alice, bob, "tls-room", {"text": "over tls", "n": 1})
    broadcast_between(bob, alice, "tls-room", {"text": "and back", "n": 2})

    status, body = get_url(f"https://127.0.0.1:{gateway.port}/health", context)
    assert status == 200
    assert body["status"] == "healthy" and body["service"] == "wingman-gateway"
    assert body["stats"]["totalNodes"] == 2 and body["stats"]["totalGroups"] == 1


# --- startup failures ----------------------------------------------------------


def test_endpoint_that_cannot_bind_fails_startup(launch, connect) -> None:
    """A second gateway on a taken port exits non-zero naming the endpoint and the OS reason."""
    first = launch("--listen", LOOPBACK)
    port = first.port
    second = launch("--listen", f"tcp:{port}:interface=127.0.0.1", wait=False)
    assert_refused_at_startup(second, f"cannot listen on tcp:{port}:interface=127.0.0.1")
    assert "Address already in use" in second.log
    # The first gateway is untouched.
    assert connect(first.url, "still-here").request("ping")["type"] == "pong"


def test_a_bad_option_value_stops_the_process_before_listening(launch) -> None:
    """The process path of a refused setting (each refusal is checked in test_config.py)."""
    gateway = launch("--listen", LOOPBACK, "--max-nodes", "abc", wait=False)
    assert_refused_at_startup(gateway, "--max-nodes: expected a whole number, got 'abc'")


# --- config file -----------------------------------------------------------------


def test_config_port_host_name_and_log_level(launch, connect, tmp_path: Path) -> None:
    """port+host choose the listener; name shows in /health; logLevel warn hides info lines."""
    port = free_tcp_port()
    config = write_config(
        tmp_path, {"port": port, "host": "127.0.0.1", "name": "from-file", "logLevel": "warn"}
    )
    gateway = launch("--config", str(config), wait=False)
    assert wait_healthy(health_url(port))["name"] == "from-file"
    node = connect(f"ws://127.0.0.1:{port}/ws", "quiet")
    assert node.request("ping")["type"] == "pong"
    assert get_url(health_url(port))[1]["stats"]["totalNodes"] == 1
    assert gateway.proc.poll() is None
    assert "listening on" not in gateway.log and "registered" not in gateway.log, gateway.log


def test_config_auth_limits_and_heartbeat_take_effect(launch, connect, tmp_path: Path) -> None:
    """requireAuth+authToken, maxNodes, pingInterval/pingTimeout and logLevel from the file."""
    secret = "file-token-7f3a9c"
    config = write_config(tmp_path, {
        "requireAuth": True, "authToken": secret, "maxNodes": 2,
        "pingInterval": 250, "pingTimeout": 5000, "logLevel": "debug",
    })
    gateway = launch("--config", str(config), "--listen", LOOPBACK)
    stats_url = f"http://127.0.0.1:{gateway.port}/stats"

    anonymous = connect(gateway.url)
    expect_error(anonymous.register("anon"), "AUTH_FAILED")
    assert expect_closed(anonymous)[0] == 1008
    wrong = connect(gateway.url)
    expect_error(wrong.register("wrong", token="not-" + secret), "AUTH_FAILED")
    assert expect_closed(wrong)[0] == 1008

    first, second, third = connect(gateway.url), connect(gateway.url), connect(gateway.url)
    ack = first.register("first", token=secret)
    assert ack["type"] == "ack", ack
    assert ack["payload"]["heartbeat"] == {"pingInterval": 250, "pingTimeout": 5000}
    assert second.register("second", token=secret)["type"] == "ack"
    expect_error(third.register("third", token=secret), "MAX_NODES_REACHED")
    assert expect_closed(third)[0] == 1013

    # The gateway's own heartbeat runs at the file's interval.
    wait_until(lambda: first.recv(3.0)["type"] == "ping", 3.0, "a heartbeat ping")

    # /stats needs the token; the admitted nodes keep working.
    status, body = get_url(stats_url)
    assert status == 401 and body["error"]["code"] == "AUTH_FAILED"
    status, body = get_url(stats_url, headers={"Authorization": f"Bearer {secret}"})
    assert status == 200 and body["nodes"]["totalNodes"] == 2
    assert first.join("auth-room")["type"] == "ack"
    assert second.join("auth-room")["type"] == "ack"
    broadcast_between(first, second, "auth-room", {"after": "refusals"})
    assert "refused AUTH_FAILED" in gateway.log  # a debug-level line
    assert secret not in gateway.log


def test_command_line_overrides_config_file(launch, connect, tmp_path: Path) -> None:
    file_port, flag_port = free_tcp_port(), free_tcp_port()
    config = write_config(
        tmp_path, {"port": file_port, "host": "127.0.0.1", "maxNodes": 1, "name": "from-file"}
    )
    gateway = launch(
        "--config", str(config), "--port", str(flag_port), "--host", "127.0.0.1",
        "--max-nodes", "2", "--name", "from-flag",
    )
    assert gateway.wait_listening() == [flag_port]
    assert f"listening on tcp:{flag_port}:interface=127.0.0.1" in gateway.log
    assert get_url(health_url(flag_port))[1]["name"] == "from-flag"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", file_port), timeout=2).close()
    url = f"ws://127.0.0.1:{flag_port}/ws"
    one = connect(url, "one")
    connect(url, "two")
    expect_error(connect(url).register("three"), "MAX_NODES_REACHED")
    assert one.request("ping")["type"] == "pong"


# --- TCP_NODELAY, in process on the real reactor ---------------------------------


class ProbeClient(WebSocketClientProtocol):
    """An Autobahn client that registers and reports its replies."""

    def onOpen(self) -> None:
        self.sendMessage(json.dumps({"type": "register", "messageId": "r", "payload": {"name": "probe"}}).encode())

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        message = json.loads(payload)
        if message.get("messageId") == "r" and not self.factory.registered.called:
            self.factory.registered.callback(message)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if not self.factory.registered.called:
            self.factory.registered.errback(ConnectionError(f"closed: {code} {reason}"))
        if not self.factory.closed.called:
            self.factory.closed.callback(code)


def probe_factory(url: str) -> WebSocketClientFactory:
    factory = WebSocketClientFactory(url)
    factory.protocol = ProbeClient
    factory.registered = defer.Deferred()
    factory.closed = defer.Deferred()
    return factory


def socket_under(transport: Any) -> tuple[socket.socket, list[Any]]:
    """Walk ``.transport`` links down to the kernel socket; also the chain walked."""
    chain = []
    for _ in range(5):
        chain.append(transport)
        sock = transport.__dict__.get("socket")
        if isinstance(sock, socket.socket):
            return sock, chain
        transport = getattr(transport, "transport", None)
    raise AssertionError(f"no socket under {chain}")


@pytest_twisted.inlineCallbacks
def test_accepted_sockets_have_tcp_nodelay(tmp_path: Path) -> Any:
    """Both a plain and a TLS listener's accepted WebSocket sockets have TCP_NODELAY set."""
    pki = make_pki(tmp_path)
    options = Options()
    options.parseOptions(["--listen", LOOPBACK, "--listen", pki.endpoint(), "--rate-limit", "0"])
    service = makeService(options, reactor)
    service.startService()
    clients = []
    try:
        plain_port, tls_port = [port.getHost().port for port in (yield service.whenListening())]
        trust = Certificate.loadPEM(pki.ca.read_bytes())
        cases = [
            (f"ws://127.0.0.1:{plain_port}/ws", None, False),
            (f"wss://127.0.0.1:{tls_port}/ws", optionsForClientTLS("localhost", trustRoot=trust), True),
        ]
        for url, tls, secure in cases:
            factory = probe_factory(url)
            connector = connectWS(factory, contextFactory=tls, timeout=10)
            clients.append((factory, connector))
            ack = yield factory.registered.addTimeout(10, reactor)
            assert ack["type"] == "ack", ack
            session = service.router.rooms.node(ack["payload"]["nodeId"])
            sock, chain = socket_under(session.conn.transport)
            assert isinstance(chain[0], TLSMemoryBIOProtocol) is secure, chain
            client_address = connector.transport.getHost()
            assert sock.getpeername() == (client_address.host, client_address.port)
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        assert service.router.rooms.node_count() == 2
    finally:
        for factory, connector in clients:
            connector.disconnect()
        yield service.stopService()
        for factory, _ in clients:
            yield factory.closed.addTimeout(10, reactor)


# --- heartbeat -------------------------------------------------------------------


def pump(node: Node, seconds: float, received: list[dict[str, Any]]) -> None:
    """Read for ``seconds``, answering heartbeat pings and keeping everything else."""
    deadline = time.monotonic() + seconds
    for _ in range(1000):
        left = deadline - time.monotonic()
        if left <= 0:
            return
        try:
            message = node.recv(left)
        except TimeoutError:
            return
        if message["type"] == "ping":
            node.send({"type": "pong"})
        else:
            received.append(message)


def test_heartbeat_drops_silent_nodes_and_keeps_answering_ones(launch, connect) -> None:
    """With a 200 ms ping and 600 ms timeout, silent connections go and answering ones stay."""
    gateway = launch("--listen", LOOPBACK, "--ping-interval", "200", "--ping-timeout", "600",
                     "--rate-limit", "0")
    mute = connect(gateway.url)  # never sends a single message
    silent = connect(gateway.url, "silent")  # registers, then never answers a ping
    talker = connect(gateway.url, "talker")
    listener = connect(gateway.url, "listener")
    assert talker.join("beat")["type"] == "ack"
    assert listener.join("beat")["type"] == "ack"
    started = time.monotonic()

    closes: dict[str, tuple[Any, Any, float]] = {}

    def watch(name: str, node: Node) -> None:
        code, reason = expect_closed(node, timeout=5.0)
        closes[name] = (code, reason, time.monotonic() - started)

    watchers = [threading.Thread(target=watch, args=item) for item in (("mute", mute), ("silent", silent))]
    for watcher in watchers:
        watcher.start()

    # 3 s = five timeouts; the talker broadcasts and both answer every ping.
    talker_got: list[dict[str, Any]] = []
    listener_got: list[dict[str, Any]] = []
    sent = 0
    while time.monotonic() - started < 3.0 and sent < 100:
        sent += 1
        talker.send({"type": "broadcast", "payload": {"groupId": "beat", "message": {"seq": sent}}})
        pump(talker, 0.05, talker_got)
        pump(listener, 0.1, listener_got)
    pump(listener, 0.3, listener_got)
    for watcher in watchers:
        watcher.join(6.0)

    # The silent ones were closed with a policy close naming the heartbeat,
    # well inside the five timeouts the answering nodes stayed connected for.
    for name in ("mute", "silent"):
        code, reason, after = closes[name]
        assert code == 1008, closes
        assert reason == "no message for 0.6 s (heartbeat timeout)", closes
        assert after < 3.0, closes
    gateway.wait_for(r"node \w+ \(silent\) left: heartbeat timeout")

    broadcasts = [m["payload"]["seq"] for m in listener_got if m["type"] == "broadcast"]
    assert sent >= 10
    assert broadcasts == list(range(1, sent + 1))
    assert [m for m in talker_got if m["type"] != "presence"] == []
    assert listener.request("ping")["type"] == "pong"
    assert talker.request("ping")["type"] == "pong"
    stats = get_url(f"http://127.0.0.1:{gateway.port}/stats")[1]
    assert sorted(n["name"] for n in stats["nodes"]["nodes"]) == ["listener", "talker"]


# --- slow consumer -----------------------------------------------------------------


def test_slow_consumer_is_cut_off_and_memory_stays_bounded(launch, connect) -> None:
    """A member that stops reading is cut off; the healthy one gets everything in order."""
    limit = 262144
    gateway = launch("--listen", LOOPBACK, "--max-buffer", str(limit), "--rate-limit", "0")
    pid = gateway.proc.pid
    stats_url = f"http://127.0.0.1:{gateway.port}/stats"
    sender = connect(gateway.url, "sender")
    healthy = connect(gateway.url, "healthy")
    assert sender.join("flood")["type"] == "ack"
    assert healthy.join("flood")["type"] == "ack"
    stalled = raw_websocket(gateway.port, receive_buffer=4096)
    send_text_frame(stalled, {"type": "register", "payload": {"name": "stalled"}})
    send_text_frame(stalled, {"type": "join_group", "payload": {"groupName": "flood"}})

    def members() -> list[str]:
        nodes = get_url(stats_url)[1]["nodes"]["nodes"]
        return sorted(n["name"] for n in nodes if n["rooms"] == ["flood"])

    wait_until(lambda: members() == ["healthy", "sender", "stalled"], 10, "the stalled node to join")
    baseline = rss_kib(pid)

    received: list[int] = []

    def read_all() -> None:
        """The healthy receiver reads until the end marker (bounded by count and time)."""
        deadline = time.monotonic() + 60
        for _ in range(1000):
            message = healthy.recv_type("broadcast", timeout=max(deadline - time.monotonic(), 0.01))
            if message["payload"].get("end"):
                return
            received.append(message["payload"]["seq"])

    reader = threading.Thread(target=read_all)
    reader.start()
    blob = "x" * 65000
    recipients: list[int] = []
    peak = baseline
    cut_at = None
    deadline = time.monotonic() + 60
    for seq in range(400):
        ack = sender.request("broadcast", {"groupId": "flood", "message": {"seq": seq, "blob": blob}})
        assert ack["type"] == "ack", ack
        recipients.append(ack["payload"]["recipients"])
        peak = max(peak, rss_kib(pid))
        if cut_at is None and "slow consumer" in gateway.log:
            cut_at = seq
        if time.monotonic() > deadline:
            break
    sent = seq + 1
    ack = sender.request("broadcast", {"groupId": "flood", "message": {"end": True}})
    assert ack["type"] == "ack" and ack["payload"]["recipients"] == 1, ack
    reader.join(60)
    assert not reader.is_alive()

    assert cut_at is not None, "the stalled node was never cut off"
    match = gateway.wait_for(r"cutting off \S+: slow consumer: (\d+) bytes unsent \(limit 262144\)")
    assert int(match.group(1)) > limit
    assert received == list(range(sent))
    # Two recipients until the cut, one after; never a mix.
    first_single = recipients.index(1)
    assert set(recipients[:first_single]) == {2} and set(recipients[first_single:]) == {1}
    wait_until(lambda: members() == ["healthy", "sender"], 10, "the stalled node to be gone")

    # The gateway closes the stalled socket: reading it to the end terminates (bounded).
    stalled.settimeout(10)
    drained = 0
    for _ in range(10000):
        try:
            chunk = stalled.recv(1 << 16)
        except ConnectionResetError:
            break
        if not chunk:
            break
        drained += len(chunk)
    else:
        raise AssertionError("stalled socket never closed")
    stalled.close()

    # Memory: the stalled member may hold at most --max-buffer (256 KiB) in
    # the gateway, and each broadcast is acked before the next, so growth
    # stays at a few MiB. A gateway that kept the stalled member's backlog
    # would grow by everything sent after the cut (>= 300 x 65 KB = 19 MB),
    # which breaks the 16 MiB bound; 150 MiB caps the whole process
    # (about 60 MiB at rest).
    assert sent == 400 and sent - cut_at >= 300, (sent, cut_at)
    assert peak < 150 * 1024, (baseline, peak)
    assert peak - baseline < 16 * 1024, (baseline, peak)
    latecomer = connect(gateway.url, "latecomer")
    assert latecomer.join("flood")["type"] == "ack"
    broadcast_between(latecomer, sender, "flood", {"still": "working"}, recipients=2)
    assert healthy.recv_type("broadcast")["payload"] == {"still": "working"}


# --- graceful stop -------------------------------------------------------------------


def test_sigterm_closes_clients_going_away_and_exits(launch, connect) -> None:
    """SIGTERM: every client gets close 1001 and the process ends within 5 s."""
    gateway = launch("--listen", LOOPBACK)
    member = connect(gateway.url, "member")
    assert member.join("lobby")["type"] == "ack"
    visitor = connect(gateway.url)  # connected, never registered
    assert visitor.request("ping")["type"] == "pong"
    signalled = time.monotonic()
    os.kill(gateway.proc.pid, signal.SIGTERM)
    for node in (member, visitor):
        assert expect_closed(node) == (1001, "gateway shutting down")
    # twistd shuts down cleanly, then re-raises the signal it got, so the
    # exit status says "terminated by SIGTERM" rather than 0.
    status = gateway.proc.wait(max(5.0 - (time.monotonic() - signalled), 0.1))
    assert status == -signal.SIGTERM, gateway.log
    assert "Server Shut Down." in gateway.log
    assert re.search(r"node \w+ \(member\) left: gateway shutting down", gateway.log)


def test_the_same_listener_twice_is_refused() -> None:
    """Two identical --listen strings are a mistake, named as such."""
    gateway = GatewayProcess(["--listen", "tcp:0:interface=127.0.0.1", "--listen", "tcp:0:interface=127.0.0.1"])
    assert gateway.wait_exit() != 0
    assert "listen: endpoint 'tcp:0:interface=127.0.0.1' is given more than once" in gateway.log


def test_ipv6_listener_is_logged_with_brackets() -> None:
    gateway = start_gateway("--listen", "tcp6:0:interface=\\:\\:1")
    try:
        line = gateway.wait_for(r"listening on tcp6:0:interface=\\:\\:1 \(\[::1\]:\d+\)")
        assert line
        node = Node(f"ws://[::1]:{gateway.port}/ws")
        assert node.register("v6")["type"] == "ack"
        node.close()
    finally:
        gateway.stop()
