"""Property: the ``wingman`` SSH subsystem reads lines the same however the
bytes are cut into SSH data packets. Random valid, invalid, blank, CRLF and
over-long lines, fed whole and in random chunks through the real line
reader (``LineSplitter``), ``LineConnection``, Conch's session channel and
the Router, give the same envelopes and errors. The SSH connection layer
under the channel is a recorder of what the channel would send."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import given, settings, strategies as st
from twisted.conch.ssh import common, keys
from twisted.internet.task import Clock

from wingman_gateway.limits import Limits
from wingman_gateway.router import Router
from wingman_gateway.transports.ssh.keys import SSHIdentity, parse_line
from wingman_gateway.transports.ssh.server import GatewayAvatar
from wingman_gateway.transports.ssh.subsystem import GatewaySession, LineSplitter

MAX_PAYLOAD = 300
KEY = keys.Key(ed25519.Ed25519PrivateKey.generate())
ENTRY = parse_line(KEY.public().toString("openssh") + b" fuzz@test", 1)


class ChannelRecorder:
    """What the session channel hands to the SSH connection layer, recorded."""

    transport = None

    def __init__(self) -> None:
        self.data: list[bytes] = []

    def sendData(self, channel: Any, data: bytes) -> None:
        self.data.append(data)

    def sendExtendedData(self, channel: Any, kind: int, data: bytes) -> None:
        self.data.append(b"stderr:" + data)

    def sendRequest(self, channel: Any, kind: bytes, data: bytes, wantReply: int = 0) -> None:
        self.data.append(b"request:" + kind)

    def sendEOF(self, channel: Any) -> None:
        self.data.append(b"eof")

    def sendClose(self, channel: Any) -> None:
        self.data.append(b"close")


def run(chunks: list[bytes]) -> list[Any]:
    """Feed ``chunks`` to a fresh subsystem channel; what came out, ids masked."""
    clock = Clock()
    router = Router(clock, Limits(max_payload=MAX_PAYLOAD, message_rate=0))
    server = SimpleNamespace(router=router, clock=clock, reactor=clock, targets=None)
    avatar = GatewayAvatar(SSHIdentity("fuzz", ENTRY), server)  # type: ignore[arg-type]
    recorder = ChannelRecorder()
    channel = GatewaySession(remoteWindow=2**31 - 1, remoteMaxPacket=32768, conn=recorder, avatar=avatar)
    assert channel.request_subsystem(common.NS(b"wingman")) == 1
    for chunk in chunks:
        channel.dataReceived(chunk)
        clock.advance(0)
    out = b"".join(recorder.data)
    masked = re.sub(rb"[0-9a-f]{16}", b"ID", out)  # node and room ids are random
    return [json.loads(line) if line.startswith(b"{") else line for line in masked.split(b"\n")]


ENVELOPES = st.one_of(
    st.builds(lambda i: {"type": "ping", "messageId": i}, st.integers(0, 10**6)),
    st.builds(lambda n: {"type": "register", "messageId": "r", "payload": {"name": n}},
              st.text(min_size=1, max_size=20)),
    st.builds(lambda g: {"type": "join_group", "messageId": "j",
                         "payload": {"groupName": g, "createIfNotExists": True}},
              st.sampled_from(["a", "b"])),
    st.builds(lambda g, m: {"type": "broadcast", "messageId": "b", "payload": {"groupId": g, "message": m}},
              st.sampled_from(["a", "b"]), st.text(max_size=30)),
    st.builds(lambda t: {"type": t}, st.text(max_size=10)),
)
LINES = st.one_of(
    ENVELOPES.map(lambda e: json.dumps(e).encode()),
    ENVELOPES.map(lambda e: json.dumps(e).encode() + b"\r"),
    st.binary(max_size=40).filter(lambda b: b"\n" not in b),  # not JSON, or not UTF-8
    st.just(b""), st.just(b"   "),
    st.integers(MAX_PAYLOAD - 5, 3 * MAX_PAYLOAD).map(lambda n: b"x" * n),  # around the limit
)


@settings(max_examples=settings.default.max_examples * 3)  # cheap examples: three times the profile's
@given(lines=st.lists(LINES, max_size=12), cuts=st.lists(st.integers(0, 10_000), max_size=20),
       tail=st.booleans())
def test_random_chunking_gives_the_same_envelopes_and_errors(lines: list[bytes], cuts: list[int],
                                                             tail: bool) -> None:
    stream = b"".join(line + b"\n" for line in lines) + (b'{"type":"ping"' if tail else b"")
    whole = run([line + b"\n" for line in lines] + ([b'{"type":"ping"'] if tail else []))
    points = sorted({cut % (len(stream) + 1) for cut in cuts})
    chunks = [stream[a:b] for a, b in zip([0] + points, points + [len(stream)]) if stream[a:b]]
    assert run(chunks) == whole
    assert run([stream]) == whole


@settings(max_examples=settings.default.max_examples * 3)  # cheap examples: three times the profile's
@given(stream=st.binary(max_size=3 * MAX_PAYLOAD), cuts=st.lists(st.integers(0, 2000), max_size=20))
def test_line_splitter_is_chunking_invariant(stream: bytes, cuts: list[int]) -> None:
    def split(chunks: list[bytes]) -> list[Any]:
        events: list[Any] = []
        splitter = LineSplitter(MAX_PAYLOAD, events.append, lambda size: events.append(("too long", size)))
        for chunk in chunks:
            splitter.feed(chunk)
        return events

    points = sorted({cut % (len(stream) + 1) for cut in cuts})
    chunks = [stream[a:b] for a, b in zip([0] + points, points + [len(stream)])]
    events = split([stream])
    assert split(chunks) == events
    # Every complete line is accounted for: delivered (not blank, within the limit) or refused.
    complete = stream.split(b"\n")[:-1]
    expected = [
        ("too long", len(line.removesuffix(b"\r"))) if len(line.removesuffix(b"\r")) > MAX_PAYLOAD
        else line.removesuffix(b"\r")
        for line in complete if line.removesuffix(b"\r").strip() or len(line) > MAX_PAYLOAD
    ]
    assert events == expected
