"""The SSH server's handshake and channel logic, in memory on a Clock.

A Conch client talks to the gateway's real SSH factory through
``twisted.test.iosim``; the other room members are in-memory connections.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.conch.ssh import common, connection, forwarding, transport
from twisted.internet.address import IPv4Address

from harness.sshkit import ClientChannel, ForwardChannel, MemorySSH, UserKey, write_authorized_keys
from wingman_gateway.limits import Limits
from wingman_gateway.transports.ssh.server import LOGIN_TIMEOUT, MAX_CHANNELS


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def alice(keys_dir: Path) -> UserKey:
    return UserKey(keys_dir, "alice")


@pytest.fixture
def mallory(keys_dir: Path) -> UserKey:
    return UserKey(keys_dir, "mallory")


def ssh_gateway(keys_dir: Path, *lines: str, **kwargs: Any) -> MemorySSH:
    return MemorySSH(write_authorized_keys(keys_dir / "authorized_keys", *lines), **kwargs)


def logged_in(gw: MemorySSH, user: str, key: UserKey) -> tuple[Any, Any]:
    client, _server, pump = gw.login(user, key)
    assert client.conn is not None, "login failed"
    return client, pump


def register(chan: ClientChannel, pump: Any, name: str, room: str | None = None) -> str:
    chan.send({"type": "register", "payload": {"name": name}})
    pump.flush()
    ack = chan.take()[0]
    assert ack["type"] == "ack", ack
    if room is not None:
        chan.send({"type": "join_group", "payload": {"groupName": room, "createIfNotExists": True}})
        pump.flush()
        joined = chan.take()[0]
        assert joined["type"] == "ack", joined
    return ack["payload"]["nodeId"]


# -- login ------------------------------------------------------------------------


def test_key_login_and_node_exchange_with_another_member(keys_dir: Path, alice: UserKey) -> None:
    gw = ssh_gateway(keys_dir, alice.line('wingman-user="alice"'))
    client, pump = logged_in(gw, "alice", alice)
    chan, outcome = gw.subsystem(client, pump)
    assert outcome and not hasattr(outcome[0], "value"), outcome
    node_id = register(chan, pump, "ssh-node", "ops")
    other, other_conn = gw.node("memory-node", "ops")
    gw.send(other, {"type": "broadcast", "payload": {"groupId": "ops", "message": {"n": 1}}})
    pump.flush()
    got = chan.take()
    assert got[-1]["type"] == "broadcast" and got[-1]["payload"] == {"n": 1}, got
    chan.send(b'{"type":"broadcast","payload":{"groupId":"ops","message":{"from":"ssh"}}}')
    pump.flush()
    heard = [m for m in other_conn.take() if m["type"] == "broadcast"]
    assert heard[0]["payload"] == {"from": "ssh"} and heard[0]["fromNodeId"] == node_id
    assert gw.router.rooms.node(node_id).conn.transport_name == "ssh"
    assert gw.router.rooms.node(node_id).conn.peer == "alice@127.0.0.1:50000"


def test_wrong_key_and_unknown_user_are_refused(keys_dir: Path, alice: UserKey,
                                               mallory: UserKey) -> None:
    gw = ssh_gateway(keys_dir, alice.line('wingman-user="alice"'))
    for user, key in (("alice", mallory), ("bob", alice)):
        client, _server, pump = gw.login(user, key)
        assert client.conn is None
        # Conch's client gives up once its one key is refused.
        assert client.disconnect_reason is None or client.disconnect_reason[0] != 0
    assert not gw.router.connections


def test_login_must_finish_within_the_timeout(keys_dir: Path, alice: UserKey) -> None:
    gw = ssh_gateway(keys_dir, alice.line())
    server = gw.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 2222))
    from twisted.test import iosim

    server_io = iosim.FakeTransport(server, isServer=True)
    server.makeConnection(server_io)
    gw.clock.advance(LOGIN_TIMEOUT - 1)
    assert not server_io.disconnecting
    gw.clock.advance(1)
    assert server_io.disconnecting
    assert b"login timeout" in b"".join(server_io.stream)


def test_key_without_user_option_accepts_any_login(keys_dir: Path, alice: UserKey) -> None:
    gw = ssh_gateway(keys_dir, alice.line())
    client, _pump = logged_in(gw, "whoever", alice)


# -- requests that are refused ----------------------------------------------------------


def test_shell_and_exec_are_refused_with_a_message(keys_dir: Path, alice: UserKey) -> None:
    gw = ssh_gateway(keys_dir, alice.line())
    client, pump = logged_in(gw, "alice", alice)
    for request, data, word in ((b"shell", b"", "shell refused"),
                                (b"exec", common.NS(b"cat /etc/passwd"), "command refused")):
        chan = gw.open(client, pump, ClientChannel())
        client.conn.sendRequest(chan, request, data, wantReply=True)
        pump.flush()
        gw.clock.advance(0)
        pump.flush()
        assert chan.err.decode().startswith(f"wingman-gateway: {word}: this SSH server runs no shell")
        assert chan.exit_status == 1 and chan.is_closed
    chan, outcome = gw.subsystem(client, pump, b"sftp")
    gw.clock.advance(0)
    pump.flush()
    assert "unknown subsystem 'sftp'" in chan.err.decode() and chan.exit_status == 1


def test_remote_forwarding_is_refused(keys_dir: Path, alice: UserKey) -> None:
    gw = ssh_gateway(keys_dir, alice.line())
    client, pump = logged_in(gw, "alice", alice)
    outcome: list[Any] = []
    client.conn.sendGlobalRequest(
        b"tcpip-forward", forwarding.packGlobal_tcpip_forward((b"0.0.0.0", 3001)), wantReply=True
    ).addBoth(outcome.append)
    pump.flush()
    assert outcome and "global request failed" in str(outcome[0].value)


def forward(gw: MemorySSH, client: Any, pump: Any, host: str, port: int) -> ForwardChannel:
    data = forwarding.packOpen_direct_tcpip((host, port), ("127.0.0.1", 40000))
    return gw.open(client, pump, ForwardChannel(), data)


def test_forwarding_only_to_the_gateways_listeners(keys_dir: Path, alice: UserKey) -> None:
    listening = [IPv4Address("TCP", "127.0.0.1", 3000), IPv4Address("TCP", "0.0.0.0", 3443)]
    gw = ssh_gateway(keys_dir, alice.line(), listening=listening)
    client, pump = logged_in(gw, "alice", alice)
    for host, port in (("127.0.0.1", 22), ("10.0.0.1", 3000), ("example.com", 3000),
                       ("127.0.0.2", 3000), ("localhost", 3001)):
        chan = forward(gw, client, pump, host, port)
        reason = chan.open_failure
        assert reason.data == connection.OPEN_ADMINISTRATIVELY_PROHIBITED, (host, port)
        assert reason.args[0] == b"forwarding is allowed only to the gateway's own listening addresses"
    targets = gw.factory.targets
    assert targets.resolve("127.0.0.1", 3000) == "127.0.0.1"
    assert targets.resolve("LOCALHOST", 3000) == "127.0.0.1"
    assert targets.resolve("127.0.0.1", 3443) == "127.0.0.1"  # wildcard listener
    assert targets.resolve("[::1]", 3443) is None  # an IPv4 wildcard does not take ::1


def test_forwarding_follows_the_keys_options(keys_dir: Path, alice: UserKey, mallory: UserKey) -> None:
    listening = [IPv4Address("TCP", "127.0.0.1", 3000)]
    gw = ssh_gateway(keys_dir, alice.line("no-port-forwarding"), mallory.line('wingman-rooms="ops"'),
                 listening=listening)
    for user, key in (("alice", alice), ("mallory", mallory)):
        client, pump = logged_in(gw, user, key)
        chan = forward(gw, client, pump, "127.0.0.1", 3000)
        assert chan.open_failure.args[0] == b"port forwarding is disabled for this key"


def test_other_channel_types_and_too_many_channels(keys_dir: Path, alice: UserKey) -> None:
    gw = ssh_gateway(keys_dir, alice.line())
    client, pump = logged_in(gw, "alice", alice)

    class X11(ClientChannel):
        name = b"x11"

    chan = gw.open(client, pump, X11())
    assert chan.open_failure.data == connection.OPEN_UNKNOWN_CHANNEL_TYPE
    opened = [gw.open(client, pump, ClientChannel()) for _ in range(MAX_CHANNELS)]
    assert all(c.is_open for c in opened)
    extra = gw.open(client, pump, ClientChannel())
    assert extra.open_failure.data == connection.OPEN_RESOURCE_SHORTAGE


def test_data_before_a_subsystem_is_bounded(keys_dir: Path, alice: UserKey) -> None:
    gw = ssh_gateway(keys_dir, alice.line())
    client, pump = logged_in(gw, "alice", alice)
    chan = gw.open(client, pump, ClientChannel())
    chan.write(b"x" * (64 * 1024 + 1))
    pump.flush()
    gw.clock.advance(0)
    pump.flush()
    assert "too much data before a subsystem was requested" in chan.err.decode()
    assert chan.is_closed


# -- the node's lines -------------------------------------------------------------------


def test_bad_lines_get_errors_and_the_node_stays_usable(keys_dir: Path, alice: UserKey) -> None:
    gw = ssh_gateway(keys_dir, alice.line(), limits=Limits(max_payload=1024))
    client, pump = logged_in(gw, "alice", alice)
    chan, _ = gw.subsystem(client, pump)
    register(chan, pump, "liner", "ops")
    chan.write(b"not json\n\n   \r\n")
    chan.write(b'{"type":"ping","messageId":1,"pad":"' + b"y" * 3000)  # arrives in pieces
    chan.write(b"y" * 3000 + b'"}\n{"type":"ping","messageId":2}\r\n')
    pump.flush()
    got = chan.take()
    assert [m["type"] for m in got] == ["error", "error", "pong"], got
    assert got[0]["payload"]["code"] == "INVALID_MESSAGE"
    assert got[1]["payload"]["code"] == "PAYLOAD_TOO_LARGE"
    assert got[1]["payload"]["message"] == "message of 6038 bytes exceeds the limit of 1024 bytes"
    assert got[2]["messageId"] == 2


def test_room_scope_of_the_key_applies(keys_dir: Path, alice: UserKey) -> None:
    gw = ssh_gateway(keys_dir, alice.line('wingman-rooms="ops,dev"'))
    client, pump = logged_in(gw, "alice", alice)
    chan, _ = gw.subsystem(client, pump)
    register(chan, pump, "scoped", "ops")
    chan.send({"type": "join_group", "payload": {"groupName": "secret", "createIfNotExists": True}})
    pump.flush()
    refused = chan.take()[0]
    assert refused["payload"]["code"] == "FORBIDDEN"
    assert refused["payload"]["message"] == "your token does not allow room 'secret'"


def test_end_of_input_ends_the_node(keys_dir: Path, alice: UserKey) -> None:
    gw = ssh_gateway(keys_dir, alice.line())
    client, pump = logged_in(gw, "alice", alice)
    chan, _ = gw.subsystem(client, pump)
    register(chan, pump, "short-lived", "ops")
    other, other_conn = gw.node("stays", "ops")
    other_conn.take()
    client.conn.sendEOF(chan)
    pump.flush()
    gw.clock.advance(0)
    pump.flush()
    left = [m for m in other_conn.take() if m["type"] == "presence"]
    assert left[0]["payload"]["event"] == "left" and left[0]["payload"]["reason"] == "end of input"
    assert chan.exit_status == 0 and chan.is_closed
    assert gw.router.rooms.node_count() == 1


def test_heartbeat_close_sends_a_last_line_and_closes(keys_dir: Path, alice: UserKey) -> None:
    gw = ssh_gateway(keys_dir, alice.line())
    client, pump = logged_in(gw, "alice", alice)
    chan, _ = gw.subsystem(client, pump)
    register(chan, pump, "silent")
    gw.clock.advance(gw.router.limits.ping_timeout + 1)
    gw.router.drop_silent()
    gw.clock.advance(0)
    pump.flush()
    last = chan.lines()[-1]
    assert last["type"] == "close" and last["payload"]["code"] == 1008
    assert "heartbeat timeout" in last["payload"]["reason"]
    assert "heartbeat timeout" in chan.err.decode()
    assert chan.exit_status == 1 and chan.is_closed
    assert not gw.router.connections


def test_a_stalled_client_is_cut_off_and_its_queue_dropped(keys_dir: Path, alice: UserKey) -> None:
    gw = ssh_gateway(keys_dir, alice.line(), limits=Limits(max_buffer=64 * 1024, message_rate=0))
    client, pump = logged_in(gw, "alice", alice)
    chan, _ = gw.subsystem(client, pump, stall=True, window=16 * 1024)
    register(chan, pump, "stalled", "ops")
    sender, sender_conn = gw.node("sender", "ops")
    sender_conn.take()
    line = next(iter(gw.router.rooms.nodes())).conn
    message = {"type": "broadcast", "payload": {"groupId": "ops", "message": "z" * 1000}}
    for _ in range(200):
        gw.send(sender, message)
        pump.flush()
    left = [m for m in sender_conn.take() if m["type"] == "presence"]
    assert left and left[0]["payload"]["reason"] == "slow consumer"
    assert line._queued < 70 * 1024  # the queue never passed the bound by more than a line
    gw.clock.advance(2.0)  # the grace period: the channel is closed, its queue dropped
    pump.flush()
    assert line._queued == 0 and chan.is_closed


def test_a_slow_client_gets_everything_in_order_once_it_reads(keys_dir: Path, alice: UserKey) -> None:
    gw = ssh_gateway(keys_dir, alice.line(), limits=Limits(message_rate=0))
    client, pump = logged_in(gw, "alice", alice)
    chan, _ = gw.subsystem(client, pump, stall=True, window=8 * 1024)
    register(chan, pump, "slow", "ops")
    sender, _ = gw.node("sender", "ops")
    for n in range(100):
        gw.send(sender, {"type": "broadcast", "payload": {"groupId": "ops", "message": {"n": n, "pad": "p" * 200}}})
    pump.flush()
    assert len(bytes(chan.out)) <= 8 * 1024
    chan.stall = False
    client.conn.adjustWindow(chan, 1024 * 1024)
    pump.flush()
    got = [m["payload"]["n"] for m in chan.lines() if m["type"] == "broadcast"]
    assert got == list(range(100))


def test_shutdown_close_says_going_away(keys_dir: Path, alice: UserKey) -> None:
    gw = ssh_gateway(keys_dir, alice.line())
    client, pump = logged_in(gw, "alice", alice)
    chan, _ = gw.subsystem(client, pump)
    register(chan, pump, "leaving")
    for session in list(gw.router.connections):
        session.conn.close(1001, "gateway shutting down")
    gw.clock.advance(0)
    pump.flush()
    assert chan.lines()[-1]["payload"] == {"code": 1001, "reason": "gateway shutting down"}
    assert chan.is_closed and not gw.router.connections
