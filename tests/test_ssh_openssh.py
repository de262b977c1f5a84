"""The real OpenSSH client against the gateway's built-in SSH server.

One gateway process (``--ssh``) serves the module; every ssh client is a
process the test starts and stops by pid; all traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from harness.support import (
    GatewayProcess,
    Node,
    assert_delivers,
    assert_usable,
    expect_error,
    free_tcp_port,
    get_url,
    start_gateway,
    wait_until,
)
from harness.sshkit import (
    SSHLineNode,
    UserKey,
    environment_without_agent,
    process_gone,
    ssh_command,
    write_authorized_keys,
)

FORWARD_REFUSED = "forwarding is allowed only to the gateway's own listening addresses"


class SSHGateway:
    def __init__(self, gateway: GatewayProcess, ssh_port: int, keys: dict[str, UserKey]) -> None:
        self.gateway = gateway
        self.ssh_port = ssh_port
        self.keys = keys

    def ssh(self, *args: str, key: str = "alice", timeout: float = 20,
            stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            ssh_command(self.ssh_port, self.keys[key].path, *args), input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True, timeout=timeout, env=environment_without_agent(),
        )


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHGateway]:
    home = tmp_path_factory.mktemp("sshgw")
    keys = {name: UserKey(home, name) for name in ("alice", "scoped", "stranger")}
    authorized = write_authorized_keys(
        home / "authorized_keys",
        keys["alice"].line('wingman-user="alice"'),
        keys["scoped"].line('wingman-user="carol",wingman-rooms="ops"'),
    )
    gateway = start_gateway(
        "--listen", "tcp:0:interface=127.0.0.1",
        "--ssh", "tcp:0:interface=127.0.0.1",
        "--ssh-host-key", str(home / "host_key"),
        "--ssh-authorized-keys", str(authorized),
        "--ping-interval", "5000", "--ping-timeout", "20000",
    )
    try:
        match = gateway.wait_for(r"SSH server on \S+ \(127\.0\.0\.1:(\d+)\)")
        yield SSHGateway(gateway, int(match.group(1)), keys)
    finally:
        gateway.stop()


@contextlib.contextmanager
def line_node(gw: SSHGateway, key: str = "alice", user: str = "alice") -> Iterator[SSHLineNode]:
    node = SSHLineNode(gw.ssh_port, gw.keys[key].path, user)
    try:
        yield node
    finally:
        node.stop()


@contextlib.contextmanager
def ws_node(gw: SSHGateway, name: str, room: str, url: str | None = None) -> Iterator[Node]:
    node = Node(url or gw.gateway.url)
    try:
        assert node.register(name)["type"] == "ack"
        assert node.join(room)["type"] == "ack"
        yield node
    finally:
        node.close()


def test_subsystem_node_and_websocket_node_share_a_room(gw: SSHGateway) -> None:
    with line_node(gw) as line, ws_node(gw, "web", "mixed") as web:
        line.register("over-ssh")
        assert line.join("mixed")["type"] == "ack"
        web.recv_type("presence")
        line.send({"type": "broadcast", "payload": {"groupId": "mixed", "message": {"hi": "web"}}})
        got = web.recv_type("broadcast")
        assert got["payload"] == {"hi": "web"} and got["fromName"] == "over-ssh"
        web.send({"type": "broadcast", "payload": {"groupId": "mixed", "message": "to ssh"}})
        heard = line.recv_type("broadcast")
        assert heard["payload"] == "to ssh" and heard["fromNodeId"] == web.node_id
        status, stats = get_url(f"http://127.0.0.1:{gw.gateway.port}/stats")
        transports = {n["name"]: n["transport"] for n in stats["nodes"]["nodes"]}
        assert transports["over-ssh"] == "ssh" and transports["web"] == "websocket"


def test_bad_lines_are_answered_and_nothing_breaks(gw: SSHGateway) -> None:
    with line_node(gw) as line, ws_node(gw, "witness", "sturdy") as web:
        line.register("clumsy")
        line.join("sturdy")
        line.write(b"{not json}\n")
        expect_error(line.recv(), "INVALID_MESSAGE")
        line.write(b'{"type":"ping","pad":"' + b"x" * (1024 * 1024) + b'"}\n')
        error = expect_error(line.recv(), "PAYLOAD_TOO_LARGE")
        assert error["details"] == {"limit": 1048576}
        assert line.request("ping")["type"] == "pong"
        assert_usable(web)
        line.send({"type": "broadcast", "payload": {"groupId": "sturdy", "message": 1}})
        assert web.recv_type("broadcast")["payload"] == 1


def test_closing_the_channel_ends_the_node(gw: SSHGateway) -> None:
    with ws_node(gw, "watcher", "brief") as web:
        with line_node(gw) as line:
            line.register("leaver")
            line.join("brief")
            web.recv_type("presence")
            pid = line.proc.pid
        wait_until(lambda: process_gone(pid), 10, "ssh to exit")
        left = web.recv_type("presence")
        assert left["payload"]["event"] == "left" and left["payload"]["name"] == "leaver"


def test_key_room_scope_is_enforced(gw: SSHGateway) -> None:
    with line_node(gw, key="scoped", user="carol") as line:
        line.register("carol")
        assert line.join("ops")["type"] == "ack"
        expect_error(line.join("finance"), "FORBIDDEN", "your token does not allow room 'finance'")


def test_allowed_local_forward_carries_a_websocket_session(gw: SSHGateway) -> None:
    local = free_tcp_port()
    tunnel = subprocess.Popen(
        ssh_command(gw.ssh_port, gw.keys["alice"].path, "-N", "-o", "ExitOnForwardFailure=yes",
                    "-L", f"127.0.0.1:{local}:127.0.0.1:{gw.gateway.port}", "alice@127.0.0.1"),
        stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, env=environment_without_agent(),
    )
    try:
        def accepting() -> bool:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", local), 0.5):
                return True
            assert tunnel.poll() is None, tunnel.stderr.read()  # type: ignore[union-attr]
            return False

        wait_until(accepting, 15, "the forwarded port")
        with ws_node(gw, "direct", "tunnelled") as direct, \
                ws_node(gw, "forwarded", "tunnelled", f"ws://127.0.0.1:{local}/ws") as forwarded:
            direct.recv_type("presence")
            assert_delivers(forwarded, direct, "tunnelled")
            assert_delivers(direct, forwarded, "tunnelled")
    finally:
        tunnel.terminate()
        tunnel.wait(10)
    gw.gateway.wait_for(rf"SSH forwarding for alice@127\.0\.0\.1:\d+ to 127\.0\.0\.1:{gw.gateway.port}")


def test_forbidden_target_is_refused_and_never_reached(gw: SSHGateway) -> None:
    with socket.socket() as bystander:
        bystander.bind(("127.0.0.1", 0))
        bystander.listen(1)
        bystander.setblocking(False)
        port = bystander.getsockname()[1]
        for target in (f"127.0.0.1:{port}", f"localhost:{gw.ssh_port}", "example.com:80"):
            result = gw.ssh("-W", target, "alice@127.0.0.1")
            assert result.returncode == 255
            stderr = result.stderr.decode()
            assert f"open failed: administratively prohibited: {FORWARD_REFUSED}" in stderr, stderr
        with pytest.raises(BlockingIOError):
            bystander.accept()  # nothing ever connected
    entry = gw.gateway.wait_for(rf"SSH forwarding to 127\.0\.0\.1:{port} refused for alice@.*")
    assert "(key SHA256:" in entry.group(0) and "AAAA" not in entry.group(0)
    assert_usable_gateway(gw)


def test_remote_forwarding_is_refused(gw: SSHGateway) -> None:
    result = gw.ssh("-N", "-o", "ExitOnForwardFailure=yes", "-R", f"0:127.0.0.1:{gw.gateway.port}",
                    "alice@127.0.0.1")
    assert result.returncode == 255
    assert "remote port forwarding failed for listen port 0" in result.stderr.decode()
    gw.gateway.wait_for(r"SSH remote forwarding \(tcpip-forward\) refused for alice@")


def test_shell_and_commands_are_refused_with_a_message(gw: SSHGateway) -> None:
    shell = gw.ssh("alice@127.0.0.1")
    assert shell.returncode == 1
    assert "wingman-gateway: shell refused: this SSH server runs no shell or commands" in shell.stderr.decode()
    command = gw.ssh("alice@127.0.0.1", "cat", "/etc/passwd")
    assert command.returncode == 1 and command.stdout == b""
    assert "wingman-gateway: command refused" in command.stderr.decode()
    sftp = gw.ssh("-s", "alice@127.0.0.1", "sftp")
    assert sftp.returncode == 1 and "unknown subsystem 'sftp'" in sftp.stderr.decode()


def test_wrong_key_and_unknown_user_are_refused(gw: SSHGateway) -> None:
    wrong = gw.ssh("-s", "alice@127.0.0.1", "wingman", key="stranger")
    assert wrong.returncode == 255
    assert "alice@127.0.0.1: Permission denied (publickey)." in wrong.stderr.decode()
    unknown = gw.ssh("-s", "mallory@127.0.0.1", "wingman")
    assert unknown.returncode == 255
    assert "mallory@127.0.0.1: Permission denied (publickey)." in unknown.stderr.decode()
    gw.gateway.wait_for(r"SSH login refused for 'alice': wrong key \(SHA256:")
    gw.gateway.wait_for(r"SSH login refused for 'mallory': unknown user \(SHA256:")
    no_password = gw.ssh("-o", "PreferredAuthentications=password", "-s", "alice@127.0.0.1", "wingman")
    assert "Permission denied (publickey)" in no_password.stderr.decode()
    assert_usable_gateway(gw)


def assert_usable_gateway(gw: SSHGateway) -> None:
    """After a refusal the gateway still serves WebSocket and SSH nodes."""
    with line_node(gw) as line, ws_node(gw, "after", "after-room") as web:
        line.register("after-ssh")
        line.join("after-room")
        web.recv_type("presence")
        line.send({"type": "broadcast", "payload": {"groupId": "after-room", "message": "ok"}})
        assert web.recv_type("broadcast")["payload"] == "ok"


def test_shutdown_tells_ssh_nodes_and_ends_their_ssh(tmp_path: Path) -> None:
    key = UserKey(tmp_path, "alice")
    authorized = write_authorized_keys(tmp_path / "authorized_keys", key.line())
    gateway = start_gateway("--ssh", "tcp:0:interface=127.0.0.1", "--ssh-host-key",
                            str(tmp_path / "hk"), "--ssh-authorized-keys", str(authorized))
    try:
        port = int(gateway.wait_for(r"SSH server on \S+ \(127\.0\.0\.1:(\d+)\)").group(1))
        node = SSHLineNode(port, key.path, "anyone")
        try:
            node.register("until-the-end")
            gateway.stop()
            last = node.recv_type("close")
            assert last["payload"] == {"code": 1001, "reason": "gateway shutting down"}
            assert node.exit_status() == 1
            assert b"wingman-gateway: gateway shutting down" in node.stderr
        finally:
            node.stop()
    finally:
        gateway.stop()
    assert re.search(r"node \S+ \(until-the-end\) left", gateway.log)


def test_bad_ssh_settings_stop_startup_with_a_reason(tmp_path: Path) -> None:
    junk = tmp_path / "junk_key"
    junk.write_text("not a key\n")
    authorized = write_authorized_keys(tmp_path / "authorized_keys", UserKey(tmp_path, "k").line())
    cases = [
        (["--ssh", "tcp:0"], "sshAuthorizedKeys: the SSH server needs --ssh-authorized-keys FILE"),
        (["--ssh", "tcp:0", "--ssh-authorized-keys", str(tmp_path / "missing")],
         f"ssh-authorized-keys: cannot read {tmp_path / 'missing'}: No such file or directory"),
        (["--ssh", "tcp:0", "--ssh-authorized-keys", str(authorized), "--ssh-host-key", str(junk)],
         f"ssh-host-key: {junk} is not an unencrypted private key"),
    ]
    for args, reason in cases:
        gateway = GatewayProcess(["--listen", "tcp:0:interface=127.0.0.1", *args])
        try:
            assert gateway.wait_exit() != 0
        finally:
            gateway.stop()
        assert reason in gateway.log, gateway.log
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = f"tcp:{taken.getsockname()[1]}:interface=127.0.0.1"
        gateway = GatewayProcess(["--listen", "tcp:0:interface=127.0.0.1", "--ssh", busy,
                                  "--ssh-host-key", str(tmp_path / "hk"),
                                  "--ssh-authorized-keys", str(authorized)])
        try:
            assert gateway.wait_exit() != 0
        finally:
            gateway.stop()
    assert f"cannot listen on {busy}" in gateway.log


def test_an_ssh_node_that_stops_reading_is_cut_off(tmp_path: Path) -> None:
    key = UserKey(tmp_path, "alice")
    authorized = write_authorized_keys(tmp_path / "authorized_keys", key.line())
    gateway = start_gateway("--ssh", "tcp:0:interface=127.0.0.1", "--ssh-host-key", str(tmp_path / "hk"),
                            "--ssh-authorized-keys", str(authorized), "--rate-limit", "0",
                            "--max-buffer", "1048576")
    try:
        port = int(gateway.wait_for(r"SSH server on \S+ \(127\.0\.0\.1:(\d+)\)").group(1))
        stuck = SSHLineNode(port, key.path)
        sender = Node(gateway.url)
        try:
            stuck.register("stuck")
            assert stuck.join("firehose")["type"] == "ack"
            sender.register("sender")
            sender.join("firehose")
            # The test stops reading the ssh node's lines here (its pipe and
            # ssh's window fill up); the sender keeps sending.
            chunk = {"type": "broadcast", "payload": {"groupId": "firehose", "message": "x" * 100_000}}
            for _ in range(400):
                sender.send(chunk)
                if "slow consumer" in gateway.log:
                    break
            match = gateway.wait_for(
                r"cutting off alice@127\.0\.0\.1:\d+: slow consumer: (\d+) bytes unsent \(limit 1048576\)"
            )
            assert int(match.group(1)) > 1048576
            left = sender.recv_type("presence", timeout=15)
            assert left["payload"]["event"] == "left" and left["payload"]["reason"] == "slow consumer"
            assert_usable(sender)
        finally:
            sender.close()
            stuck.stop()
    finally:
        gateway.stop()


def test_a_line_node_whose_ssh_is_killed_resumes_on_a_new_session(gw: SSHGateway) -> None:
    speaker = Node(gw.gateway.url)
    first = SSHLineNode(gw.ssh_port, gw.keys["alice"].path)
    again: SSHLineNode | None = None
    try:
        speaker.register("speaker")
        assert speaker.join("resume")["type"] == "ack"
        first.register("lines")
        assert first.join("resume")["type"] == "ack"

        def say(numbers: range) -> None:
            for n in numbers:
                speaker.send({"type": "broadcast", "payload": {"groupName": "resume", "message": {"n": n}}})

        say(range(10))
        got = [first.recv_type("broadcast") for _ in range(10)]
        assert [m["payload"]["n"] for m in got] == list(range(10))
        first.proc.kill()  # the SSH connection is cut, not closed
        first.stop()
        say(range(10, 20))
        again = SSHLineNode(gw.ssh_port, gw.keys["alice"].path)
        again.register("lines")
        since = {"offset": got[-1]["offset"], "epoch": got[-1]["epoch"]}
        ack = again.request("join_group", {"groupName": "resume", "since": since})
        assert ack["payload"]["recovered"] is True, ack
        say(range(20, 22))
        rest = [again.recv_type("broadcast") for _ in range(12)]
        assert [m["payload"]["n"] for m in rest] == list(range(10, 22))
        assert [m["offset"] for m in rest] == list(range(since["offset"] + 1, since["offset"] + 13))
    finally:
        speaker.close()
        first.stop()
        if again is not None:
            again.stop()
