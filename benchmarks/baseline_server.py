"""A minimal pure-Twisted fan-out server: the yardstick for the load generator.

It speaks just enough WebSocket and protocol v1 for the fan-out scenario
(handshake, register, join_group, broadcast) and fans each broadcast out by
writing one pre-built frame's bytes to every other connection's transport:
no routing logic, no validation, no Autobahn. Whatever it reaches is about
the most a Twisted process on this core can push, so the load generator
absorbing it shows the generator is not what limits the gateway's figure.

Run: ``python benchmarks/baseline_server.py --port 0`` (prints the port).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import secrets
import time
from typing import Any

from twisted.internet import protocol, reactor

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MESSAGE_KEY = b'"message":'


def server_frame(payload: bytes) -> bytes:
    """One final, unmasked text frame."""
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 65536:
        return bytes((0x81, 126)) + size.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + size.to_bytes(8, "big") + payload


def unmask(data: bytes, mask: bytes) -> bytes:
    size = len(data)
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(size, "little")


class Room:
    def __init__(self, name: str) -> None:
        self.id = secrets.token_hex(8)
        self.name = name
        self.members: list["Client"] = []


class Client(protocol.Protocol):
    """One connection: the HTTP upgrade, then crude frame parsing."""

    factory: "Hub"
    transport: Any

    def connectionMade(self) -> None:
        self.buffer = b""
        self.upgraded = False
        self.node_id = secrets.token_hex(8)
        self.name = ""
        self.room: Room | None = None
        self.transport.setTcpNoDelay(True)

    def connectionLost(self, reason: Any = None) -> None:
        if self.room is not None and self in self.room.members:
            self.room.members.remove(self)

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded:
            head, sep, rest = self.buffer.partition(b"\r\n\r\n")
            if not sep:
                return
            key = b""
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"sec-websocket-key":
                    key = value.strip()
            accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
            self.transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            self.upgraded = True
            self.buffer = rest
        buf = self.buffer
        pos = 0
        end = len(buf)
        while pos + 6 <= end:
            opcode = buf[pos] & 0x0F
            size = buf[pos + 1] & 0x7F
            start = pos + 2
            if size == 126:
                size = int.from_bytes(buf[start : start + 2], "big")
                start += 2
            elif size == 127:
                if start + 8 > end:
                    break
                size = int.from_bytes(buf[start : start + 8], "big")
                start += 8
            if start + 4 + size > end:
                break
            mask = buf[start : start + 4]
            payload = unmask(buf[start + 4 : start + 4 + size], mask)
            pos = start + 4 + size
            if opcode == 1:
                self.text(payload)
            elif opcode == 8:
                self.transport.loseConnection()
                return
        self.buffer = buf[pos:]

    def text(self, payload: bytes) -> None:
        if payload.startswith(b'{"type":"broadcast"'):
            room = self.room
            if room is None:
                return
            # Crude: the message is whatever follows "message": up to the
            # envelope's last two closing braces.
            message = payload[payload.index(MESSAGE_KEY) + len(MESSAGE_KEY) : -2]
            head = (
                '{"type":"broadcast","nodeId":"%s","fromNodeId":"%s","fromName":"%s",'
                '"groupId":"%s","groupName":"%s","timestamp":%d,"payload":'
                % (self.node_id, self.node_id, self.name, room.id, room.name, int(time.time() * 1000))
            ).encode()
            frame = server_frame(head + message + b"}")
            for member in room.members:
                if member is not self:
                    member.transport.write(frame)
            return
        envelope = json.loads(payload)
        kind = envelope.get("type")
        body = envelope.get("payload") or {}
        reply: dict[str, Any] = {"type": "ack", "messageId": envelope.get("messageId")}
        if kind == "register":
            self.name = str(body.get("name", ""))
            reply["payload"] = {"nodeId": self.node_id, "name": self.name}
        elif kind == "join_group":
            room = self.factory.room(str(body.get("groupName") or body.get("groupId")))
            if self not in room.members:
                room.members.append(self)
            self.room = room
            reply["payload"] = {"groupId": room.id, "groupName": room.name}
        elif kind == "ping":
            reply = {"type": "pong", "messageId": envelope.get("messageId")}
        else:
            return
        self.transport.write(server_frame(json.dumps(reply, separators=(",", ":")).encode()))


class Hub(protocol.Factory):
    protocol = Client
    noisy = False

    def __init__(self) -> None:
        self.rooms: dict[str, Room] = {}

    def room(self, name: str) -> Room:
        for room in self.rooms.values():
            if name in (room.name, room.id):
                return room
        room = self.rooms[name] = Room(name)
        return room


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--interface", default="127.0.0.1")
    args = parser.parse_args()
    port = reactor.listenTCP(args.port, Hub(), interface=args.interface)
    host = port.getHost()
    print(f"baseline listening on tcp ({host.host}:{host.port})", flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
