"""Nothing lost on a reconnect: both Python clients (one protocol core) resume
each room from its last position, against the real gateway, whatever cut the
connection: an aborted TCP connection (through a relay the test cuts), or a
``wingman gateway join`` process stopped (SIGSTOP) until the gateway drops it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from typing import Any, Callable

import pytest
import pytest_twisted

from harness.relay import Relay
from harness.sdkkit import Flavour, Inbox, States
from harness.support import GatewayProcess, Node, running_gateway

COUNT = 300


# The whole stream fits in the room's history, however late the listener is back.
@pytest.mark.gateway("--rate-limit", "0", "--history-size", str(COUNT))
@pytest.mark.parametrize("transport", ["websocket", "http"])
@pytest_twisted.ensureDeferred
async def test_a_listener_whose_tcp_connection_is_aborted_mid_stream_gets_every_message_once(
    gateway: GatewayProcess, flavour: Flavour, transport: str
) -> None:
    relay = Relay(gateway.port)

    async def scenario() -> None:
        listener = flavour.client(f"http://127.0.0.1:{relay.port}", "listener", transport=transport)
        speaker = flavour.client(gateway.url, "speaker")
        inbox, states = Inbox(flavour, listener), States(flavour, listener)
        for client in (listener, speaker):
            await flavour.within(client.connect())
            await flavour.within(client.join("stream"))
        for n in range(COUNT):
            await flavour.within(speaker.broadcast("stream", {"n": n}))
            if n == COUNT // 3:
                assert relay.cut() >= 1
            if n % 20 == 0:
                await flavour.sleep(0.01)
        if transport == "websocket":  # the bridge resumes inside its session instead
            recovered = await states.wait_for("recovered")
            assert recovered["room"] == "stream" and recovered["missed"] >= 0
        got = [(await inbox.next("broadcast", timeout=10)).payload["n"] for _ in range(COUNT)]
        assert got == list(range(COUNT))
        await flavour.sleep(0.2)
        assert inbox.without("presence") == []  # nothing more: no duplicate
        assert "gap" not in states.names

    try:
        await flavour.run(scenario)
    finally:
        relay.stop()


@pytest.mark.gateway("--rate-limit", "0")
@pytest_twisted.ensureDeferred
async def test_a_broadcast_retried_after_a_reconnect_is_delivered_once(
    gateway: GatewayProcess, flavour: Flavour
) -> None:
    relay = Relay(gateway.port)

    async def scenario() -> None:
        speaker = flavour.client(f"ws://127.0.0.1:{relay.port}/ws", "speaker")
        listener = flavour.client(gateway.url, "listener")
        inbox, states = Inbox(flavour, listener), States(flavour, speaker)
        for client in (speaker, listener):
            await flavour.within(client.connect())
            await flavour.within(client.join("room"))
        assert await flavour.within(speaker.broadcast("room", "once", key="answer-1")) == 1
        relay.cut()  # the ack may be lost: the speaker retries on its new connection
        await states.wait_for("reconnected")
        assert await flavour.within(speaker.broadcast("room", "once", key="answer-1")) == 1
        assert await flavour.within(speaker.broadcast("room", "after", key="answer-2")) == 1
        assert [(await inbox.next("broadcast")).payload for _ in range(2)] == ["once", "after"]
        assert inbox.without("presence") == []

    try:
        await flavour.run(scenario)
    finally:
        relay.stop()


class Lines:
    """The lines a process writes, read without blocking."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.fd = proc.stdout.fileno()
        os.set_blocking(self.fd, False)
        self.buffered = b""
        self.lines: list[str] = []

    def until(self, done: Callable[[list[str]], bool], timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not done(self.lines):
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                chunk = b""
            if chunk:
                *complete, self.buffered = (self.buffered + chunk).split(b"\n")
                self.lines.extend(line.decode() for line in complete if line.strip())
            else:
                time.sleep(0.02)
        return self.lines


def said(mode: str, line: str) -> int | None:
    """The number of a message ``mN`` as ``join`` prints it, or None."""
    if mode == "json":
        envelope = json.loads(line)
        text = envelope.get("payload") if envelope.get("type") == "broadcast" else None
    else:
        found = re.fullmatch(r"\[stream\] speaker: (m\d+)", line)
        text = found.group(1) if found else None
    return int(text[1:]) if isinstance(text, str) and text.startswith("m") else None


def joined(mode: str, line: str) -> bool:
    return '"event": "connected"' in line or line.startswith("-- connected to ")


@pytest.mark.parametrize("mode", ["json", "text"])
def test_a_join_process_stopped_and_continued_gets_every_message_once_and_says_so(mode: str) -> None:
    with running_gateway("--ping-interval", "200", "--ping-timeout", "600", "--rate-limit", "0") as gateway:
        proc = subprocess.Popen(
            [sys.executable, "-m", "wingman_gateway", "gateway", "join", gateway.url,
             "--name", "sleeper", "--group", "stream", *(["--json"] if mode == "json" else [])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        output = Lines(proc)
        ready = output.until(lambda ls: any(joined(mode, line) for line in ls), 20)
        assert any(joined(mode, line) for line in ready), ready
        speaker = Node(gateway.url)

        def say(numbers: range, pause: float) -> None:
            for n in numbers:
                speaker.send({"type": "broadcast", "payload": {"groupName": "stream", "message": f"m{n}"}})
                time.sleep(pause)

        try:
            speaker.register("speaker")
            assert speaker.join("stream")["type"] == "ack"
            say(range(40), 0)
            os.kill(proc.pid, signal.SIGSTOP)
            try:
                say(range(40, 80), 0.02)  # while it sleeps; it is dropped (heartbeat timeout)
                for _ in range(10):  # the speaker answers the heartbeat meanwhile
                    speaker.send({"type": "pong"})
                    time.sleep(0.1)
            finally:
                os.kill(proc.pid, signal.SIGCONT)
            say(range(80, 100), 0.02)
            lines = output.until(lambda ls: any(said(mode, line) == 99 for line in ls), 30)
            got = [n for n in (said(mode, line) for line in lines) if n is not None]
            assert got == list(range(100)), got
            if mode == "json":
                events = [json.loads(line).get("event") for line in lines if '"type": "local"' in line]
                assert "reconnected" in events and "recovered" in events and "gap" not in events, events
            else:
                notes = [line for line in lines if line.startswith("-- ")]
                assert any(re.fullmatch(r"-- \[stream\] \d+ missed messages recovered", n) for n in notes), notes
                assert not any("may have been lost" in n for n in notes), notes
        finally:
            speaker.close()
            proc.stdin.close()  # type: ignore[union-attr]
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@pytest.mark.gateway("--history-size", "2", "--history-ttl", "60000")
def test_the_history_options_reach_the_running_gateway(gateway: GatewayProcess) -> None:
    speaker, late = Node(gateway.url), Node(gateway.url)
    try:
        speaker.register("speaker")
        ack = speaker.join("small")["payload"]
        for n in range(5):
            speaker.send({"type": "broadcast", "payload": {"groupName": "small", "message": n}})
        late.register("late")
        old = late.request("join_group", {"groupName": "small", "since": {"offset": 2, "epoch": ack["epoch"]}})
        assert (old["payload"]["recovered"], old["payload"]["reason"], old["payload"]["offset"]) == (False, "too old", 5)
        new = late.request("join_group", {"groupName": "small", "since": {"offset": 3, "epoch": ack["epoch"]}})
        assert new["payload"]["recovered"] is True
        assert [late.recv_type("broadcast")["payload"] for _ in range(2)] == [3, 4]
    finally:
        speaker.close()
        late.close()


@pytest.mark.gateway("--history-size", "0")
def test_without_history_the_gateway_is_stateless_as_before(gateway: GatewayProcess) -> None:
    speaker, listener = Node(gateway.url), Node(gateway.url)
    try:
        speaker.register("speaker")
        listener.register("listener")
        ack = speaker.join("plain")["payload"]
        assert "offset" not in ack and "epoch" not in ack
        listener.join("plain")
        speaker.send({"type": "broadcast", "payload": {"groupName": "plain", "message": 1}})
        delivered = listener.recv_type("broadcast")
        assert "offset" not in delivered and "epoch" not in delivered
    finally:
        speaker.close()
        listener.close()
