"""Resuming in the JavaScript client (wingman.js) and the web console against
the real gateway. A Node listener whose connection is cut mid-stream (a TCP
relay the test resets, or the server API's disconnect, which ends an HTTP
bridge session) delivers every message once and in order and says
``recovered``; a history too short for its absence gives ``gap`` as the
Python core does; a replay of what it already has is dropped; and the
console shows both as a line in the room."""

from __future__ import annotations

import contextlib
import json
import random
import re
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from playwright.sync_api import BrowserContext, expect

from harness.bridgekit import call
from harness.browserkit import chromium
from harness.consolekit import ConsolePage, screenshot_dir
from harness.jsnode import CLIENT, Listener, events
from harness.relay import Relay
from harness.support import GatewayProcess, Node, expect_silence, running_gateway
from wingman_gateway.protocol.positions import Positions

POSITIONS = Path(__file__).parent / "harness" / "js" / "positions.mjs"
ADMIN = "resume-admin-Hq2w7Nf4kP9s-credential"
COUNT = 200


@contextlib.contextmanager
def behind_a_relay(tmp_path: Path, *options: str) -> Iterator[tuple[GatewayProcess, Relay]]:
    """A gateway with the admin credential and ``options``, and a relay to it the test can cut."""
    credential = tmp_path / "admin-token"
    credential.write_text(ADMIN + "\n")
    credential.chmod(0o600)
    with running_gateway("--admin-token-file", str(credential), *options) as gateway:
        relay = Relay(gateway.port)
        try:
            yield gateway, relay
        finally:
            relay.stop()


def member(gateway: GatewayProcess, name: str, room: str) -> tuple[Node, str]:
    """A Python node in ``room`` (created by it); the room's epoch."""
    node = Node(gateway.url)
    assert node.register(name)["type"] == "ack"
    ack = node.join(room)
    assert ack["type"] == "ack" and ack["payload"]["offset"] == 0
    return node, ack["payload"]["epoch"]


def say(node: Node, room: str, message: Any) -> None:
    node.send({"type": "broadcast", "payload": {"groupName": room, "message": message}})


def said(node: Node, room: str, message: Any) -> None:
    """Broadcast and wait for the gateway's ack."""
    assert node.request("broadcast", {"groupName": room, "message": message})["type"] == "ack"


def cut_off(how: str, gateway: GatewayProcess, relay: Relay, listener: Listener) -> None:
    """Break the listener's connection: reset its TCP connections, or have the gateway drop it."""
    if how == "relay":
        assert relay.cut() >= 1
        return
    reply = call(gateway.port, "POST", f"/api/nodes/{listener.node_id}/disconnect", json.dumps({"reason": "cut"}),
                 {"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"})
    assert reply.status == 200 and reply.body["disconnected"] is True, reply


def random_operations(chance: random.Random, count: int) -> list[list[Any]]:
    """Position operations as a node meets them: acks and deliveries in two
    rooms, offsets close together, now and then another epoch or none."""
    def place(recovered: bool = False) -> dict[str, Any]:
        if chance.random() < 0.1:
            return {}  # a gateway without history
        found: dict[str, Any] = {"offset": chance.randint(0, 12), "epoch": chance.choice(["e1", "e1", "e1", "e2"])}
        if recovered:
            found["recovered"] = chance.random() < 0.5
            if not found["recovered"] and chance.random() < 0.8:
                found["reason"] = chance.choice(["other epoch", "too old", "unknown offset"])
        return found

    operations: list[list[Any]] = []
    for _ in range(count):
        room = chance.choice(["alpha", "beta"])
        kind = chance.choices(["delivered", "sent", "joined", "resumed", "get", "forget", "keep"],
                              [8, 3, 2, 2, 2, 1, 1])[0]
        if kind in ("delivered", "sent"):
            operations.append([kind, room, place()])
        elif kind in ("joined", "resumed"):
            operations.append([kind, room, place(kind == "resumed"), {}])
        elif kind == "keep":
            operations.append([kind, room, [room]])
        else:
            operations.append([kind, room])
    return operations


def python_answers(operations: list[list[Any]]) -> list[Any]:
    """What the Python core's ``Positions`` answers, in JSON's terms."""
    positions = Positions()
    answers: list[Any] = []
    for kind, room, *arguments in operations:
        if kind == "resumed":
            answer: Any = positions.resumed(room, positions.get(room), *arguments)
        elif kind == "keep":
            answer = positions.keep(*arguments)  # the rooms kept, not one room
        else:
            answer = getattr(positions, kind)(room, *arguments)
        if answer is not None and hasattr(answer, "epoch"):
            answer = {"offset": answer.offset, "epoch": answer.epoch}
        answers.append(list(answer) if isinstance(answer, tuple) else answer)
    return answers


def test_positions_answer_as_the_python_core_does() -> None:
    """The same operations through both: the same positions, duplicates, recovered and gap."""
    chance = random.Random(20261127)
    sequences = [random_operations(chance, 60) for _ in range(300)]
    done = subprocess.run(["node", str(POSITIONS), str(CLIENT)], input=json.dumps(sequences),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    answers = json.loads(done.stdout)
    for operations, answered in zip(sequences, answers, strict=True):
        assert answered == python_answers(operations), operations
    seen = {kind for operations in sequences for kind, *_ in operations}
    assert seen == {"delivered", "sent", "joined", "resumed", "get", "forget", "keep"}
    flat = [answer for answered in answers for answer in answered]
    assert True in flat and False in flat  # deliveries kept and duplicates dropped
    assert {answer[0] for answer in flat if isinstance(answer, list)} == {"recovered", "gap"}


# Over the bridge a reset inside a session is resumed by the session's seq
# numbers (no rejoin); the server API's disconnect ends the session, so the
# client registers anew and rejoins with `since`.
@pytest.mark.parametrize("wire, how", [("ws", "relay"), ("bridge", "relay"), ("bridge", "disconnect")])
def test_a_node_cut_off_mid_stream_delivers_every_message_once_in_order(tmp_path: Path, wire: str, how: str) -> None:
    with behind_a_relay(tmp_path, "--rate-limit", "0", "--history-size", str(COUNT)) as (gateway, relay):
        speaker, epoch = member(gateway, "speaker", "stream")
        listener = Listener(f"ws://127.0.0.1:{relay.port}/ws", wire, "stream")
        try:
            assert listener.chosen == ("websocket" if wire == "ws" else "http")
            for n in range(COUNT):
                say(speaker, "stream", {"n": n})
                if n == COUNT // 3:
                    cut_off(how, gateway, relay, listener)
                if n % 20 == 0:
                    time.sleep(0.01)
            listener.ask(f"WAIT {COUNT}", f"HAVE {COUNT}")
            # The gateway sends the whole history again: every message a duplicate.
            listener.ask(f"REPLAY {epoch}", "REPLAYED")
            say(speaker, "stream", {"n": COUNT})  # queued after the replay
            listener.ask(f"WAIT {COUNT + 1}", f"HAVE {COUNT + 1}")
            result = listener.result()
        finally:
            listener.stop()
            speaker.close()
    assert [message["n"] for message in result["delivered"]] == list(range(COUNT + 1))
    assert events(result, "gap") == []
    if (wire, how) == ("bridge", "relay"):
        return  # resumed inside the session; a rejoin, if a send failed meanwhile, says recovered
    [recovered] = events(result, "recovered")
    since = recovered["since"]
    assert recovered["room"] == "stream" and since["epoch"] == epoch
    assert 0 <= since["offset"] and recovered["missed"] >= 0 and since["offset"] + recovered["missed"] <= COUNT
    names = [event for event, _ in result["states"]]
    assert names[0] == "disconnected" and names[-2:] == ["recovered", "reconnected"], names
    assert set(names[1:-2]) == {"reconnecting"}, names


@pytest.mark.parametrize("wire, how", [("ws", "relay"), ("bridge", "disconnect")])
def test_a_node_away_longer_than_the_history_reports_a_gap(tmp_path: Path, wire: str, how: str) -> None:
    with behind_a_relay(tmp_path, "--history-size", "3") as (gateway, relay):
        speaker, epoch = member(gateway, "speaker", "short")
        # Back no sooner than 1.5 s: the ten messages below are all sent meanwhile.
        listener = Listener(f"ws://127.0.0.1:{relay.port}/ws", wire, "short", minBackoff=1500, maxBackoff=2000)
        try:
            for n in range(5):
                said(speaker, "short", {"n": n})
            listener.ask("WAIT 5", "HAVE 5")
            cut_off(how, gateway, relay, listener)
            for n in range(5, 15):
                said(speaker, "short", {"n": n})
            listener.ask("STATE reconnected", "STATE reconnected")
            for n in range(15, 18):
                said(speaker, "short", {"n": n})
            listener.ask("WAIT 8", "HAVE 8")
            result = listener.result()
        finally:
            listener.stop()
            speaker.close()
    assert [message["n"] for message in result["delivered"]] == [0, 1, 2, 3, 4, 15, 16, 17]
    # What the Python core reports: where it was, and the gateway's reason.
    assert events(result, "gap") == [{"room": "short", "since": {"offset": 5, "epoch": epoch}, "reason": "too old"}]
    assert events(result, "recovered") == []


@pytest.mark.parametrize("wire", ["ws", "bridge"])
def test_a_broadcast_sent_again_with_its_key_after_a_reconnect_is_delivered_once(tmp_path: Path, wire: str) -> None:
    with behind_a_relay(tmp_path) as (gateway, relay):
        hearer, _ = member(gateway, "hearer", "room")
        speaker = Listener(f"ws://127.0.0.1:{relay.port}/ws", wire, "room")
        try:
            speaker.ask("SEND answer-1 once", "SENT 1")
            cut_off("disconnect", gateway, relay, speaker)  # as if the ack had been lost
            speaker.ask("STATE reconnected", "STATE reconnected")
            speaker.ask("SEND answer-1 once", "SENT 1")  # the first send's recipients
            speaker.ask("SEND answer-2 after", "SENT 1")
            heard = [hearer.recv_type("broadcast")["payload"] for _ in range(2)]
            expect_silence(hearer, ignore=("ping", "presence"))
            speaker.result()
        finally:
            speaker.stop()
            hearer.close()
    assert heard == ["once", "after"]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[BrowserContext]:
    with chromium(tmp_path / "chromium-profile") as context:
        yield context


def test_the_console_says_what_was_recovered_and_what_may_be_lost(tmp_path: Path, browser: BrowserContext) -> None:
    with behind_a_relay(tmp_path, "--history-size", "3") as (gateway, relay):
        speaker, _ = member(gateway, "speaker", "watch")
        try:
            # The page comes through the relay, so its WebSocket does too.
            console = ConsolePage(browser, f"http://127.0.0.1:{relay.port}", "#/rooms/watch")
            console.connected()
            stream = console.page.locator(".stream")
            chat = stream.locator(".chat .body")
            said(speaker, "watch", "before")
            expect(chat).to_have_text(["before"])
            relay.cut()
            said(speaker, "watch", "while away")  # one message: the history has it
            recovered = stream.locator(".notice.recovered")
            expect(recovered).to_have_text(re.compile("1 missed message recovered"))
            expect(chat).to_have_text(["before", "while away"])
            console.connected()
            relay.cut()
            for n in range(5):  # more than the history keeps
                said(speaker, "watch", f"lost {n}")
            gap = stream.locator(".notice.gap")
            expect(gap).to_have_text(re.compile(r"messages may have been lost while away \(too old\)"))
            expect(gap).to_be_visible()
            expect(chat).to_have_text(["before", "while away"])
            expect(recovered).to_have_count(1)
            console.no_problems()
            console.page.screenshot(path=str(screenshot_dir() / "room-resumed.png"))
        finally:
            speaker.close()
