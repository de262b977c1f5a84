"""HTTP bridge test nodes, spoken with the standard library's ``http.client``
(independent of the gateway's own client), and a WebSocket-refusing proxy."""

from __future__ import annotations

import http.client
import json
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import attrs
from harness.background import stop_process
from harness.support import GatewayProcess, expect_error

SESSION = "X-Wingman-Session"
PROXY = str(Path(__file__).with_name("blocking_proxy.py"))


@attrs.define
class Reply:
    """An HTTP answer from the bridge: status, headers (lower-case names), JSON body."""

    status: int
    headers: dict[str, str]
    body: Any
    raw: bytes

    @property
    def code(self) -> str | None:
        """The error code, for an error envelope."""
        if isinstance(self.body, dict) and self.body.get("type") == "error":
            return self.body["payload"]["code"]
        return None


def call(
    port: int, method: str, path: str, body: bytes | str | None = None,
    headers: dict[str, str] | None = None, timeout: float = 10.0,
) -> Reply:
    """One request to the gateway on loopback (a fresh connection)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        raw = response.read()
        names = {name.lower(): value for name, value in response.getheaders()}
        parsed = json.loads(raw) if raw and "json" in names.get("content-type", "") else None
        return Reply(response.status, names, parsed, raw)
    finally:
        connection.close()


class BridgeNode:
    """A node on the HTTP bridge: posts envelopes, reads by poll or by event stream."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.secret: str | None = None
        self.node_id: str | None = None
        self.after = 0
        self._next_id = 0

    def headers(self, **extra: str) -> dict[str, str]:
        headers = {"Content-Type": "application/json", **extra}
        if self.secret is not None:
            headers[SESSION] = self.secret
        return headers

    def post(self, envelope: dict[str, Any] | str | bytes, **headers: str) -> Reply:
        body = envelope if isinstance(envelope, (str, bytes)) else json.dumps(envelope)
        return call(self.port, "POST", "/bridge/send", body, self.headers(**headers))

    def request(self, kind: str, payload: dict[str, Any] | None = None, **envelope: Any) -> Reply:
        """Post with a fresh messageId; the reply must carry it."""
        self._next_id += 1
        message_id = f"h{self._next_id}"
        body: dict[str, Any] = {"type": kind, "messageId": message_id, **envelope}
        if payload is not None:
            body["payload"] = payload
        reply = self.post(body)
        if isinstance(reply.body, dict):
            assert reply.body.get("messageId") == message_id, reply
        return reply

    def register(self, name: str, **extra: Any) -> Reply:
        reply = self.request("register", {"name": name, **extra})
        if reply.status == 200:
            self.secret = reply.body["session"]
            self.node_id = reply.body["payload"]["nodeId"]
        return reply

    def join(self, room: str, create: bool = True) -> Reply:
        return self.request("join_group", {"groupName": room, "createIfNotExists": create})

    def broadcast(self, room: str, message: Any) -> Reply:
        return self.request("broadcast", {"groupId": room, "message": message})

    def poll(self, after: int | None = None, timeout: float = 5.0, **headers: str) -> Reply:
        """One long poll (``after`` defaults to the last seq seen); advances ``after``."""
        position = self.after if after is None else after
        reply = call(
            self.port, "GET", f"/bridge/poll?after={position}&timeout={timeout:g}",
            headers=self.headers(**headers), timeout=timeout + 10,
        )
        if reply.status == 200 and reply.body["messages"]:
            self.after = reply.body["messages"][-1]["seq"]
        return reply

    def drain(self, kinds: tuple[str, ...] = ("broadcast", "direct"), timeout: float = 1.0) -> list[dict[str, Any]]:
        """Envelopes of ``kinds`` until a poll holds ``timeout`` s with nothing (bounded)."""
        got: list[dict[str, Any]] = []
        for _ in range(200):
            reply = self.poll(timeout=timeout)
            assert reply.status == 200, reply
            items = reply.body["messages"]
            if not items:
                return got
            got += [item["envelope"] for item in items if item["envelope"]["type"] in kinds]
        raise AssertionError("the queue never drained")

    def next_of(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        """The next envelope of ``kind`` by polling, skipping others (bounded)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = self.poll(timeout=min(2.0, max(deadline - time.monotonic(), 0.1)))
            assert reply.status == 200, reply
            for index, item in enumerate(reply.body["messages"]):
                if item["envelope"]["type"] == kind:
                    # Leave what follows for the next poll.
                    self.after = item["seq"]
                    return item["envelope"]
        raise AssertionError(f"no {kind} within {timeout} s")

    def stream(self, after: int | None = None, **headers: str) -> "EventStream":
        return EventStream(self.port, self.headers(**headers), after)


class EventStream:
    """``GET /bridge/sse`` read event by event, every read bounded."""

    def __init__(self, port: int, headers: dict[str, str], after: int | None = None) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        path = "/bridge/sse" + (f"?after={after}" if after is not None else "")
        self.connection.request("GET", path, headers={"Accept": "text/event-stream", **headers})
        self.response = self.connection.getresponse()
        self.status = self.response.status
        self.headers = {name.lower(): value for name, value in self.response.getheaders()}
        self.comments: list[str] = []
        self.last_id: int | None = None

    def next_event(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next event: ``{"id", "event", "data"}`` (comments are collected)."""
        assert self.connection.sock is not None
        self.connection.sock.settimeout(timeout)
        event: dict[str, Any] = {"id": None, "event": "message", "data": []}
        for _ in range(100000):
            line = self.response.readline()
            if not line:
                raise EOFError("the event stream ended")
            text = line.decode("utf-8").rstrip("\r\n")
            if not text:
                if event["data"]:
                    event["data"] = "\n".join(event["data"])
                    if event["id"] is not None:
                        self.last_id = int(event["id"])
                    return event
                continue
            if text.startswith(":"):
                self.comments.append(text[1:].strip())
                continue
            name, _, value = text.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                event["data"].append(value)
            elif name in ("id", "event"):
                event[name] = value
        raise AssertionError("no event")

    def next_of(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        """The next message envelope of ``kind`` (bounded)."""
        deadline = time.monotonic() + timeout
        for _ in range(1000):
            event = self.next_event(max(deadline - time.monotonic(), 0.05))
            envelope = json.loads(event["data"])
            if envelope.get("type") == kind:
                return envelope
        raise AssertionError(f"no {kind}")

    def close(self) -> None:
        self.connection.close()


def raw_request(port: int, text: str) -> socket.socket:
    """A request written by hand on a fresh socket (to drop its answer mid-flight)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(text.encode("latin-1"))
    return sock


def stalled_stream(port: int, secret: str) -> socket.socket:
    """An event stream of the session ``secret`` on a socket with a tiny receive
    buffer that is never read: the gateway sees a consumer that stopped reading."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET /bridge/sse HTTP/1.1\r\nHost: x\r\n{SESSION}: {secret}\r\n\r\n".encode())
    return sock


def flood_until_unread(gateway: GatewayProcess, sender: Any, room: str, limit: int = 80) -> int:
    """Broadcast 200 kB messages into ``room`` until the gateway drops an event
    stream nobody reads (bounded by ``limit``); how many were sent."""
    block = "b" * 200_000
    sent = 0
    for n in range(limit):
        reply = sender.request("broadcast", {"groupId": room, "message": {"n": n, "pad": block}})
        assert reply["type"] == "ack", reply  # (the gateway must run without rate limits)
        sent = n + 1
        if "is not read" in gateway.log:
            break
    gateway.wait_for(r"event stream of node \w+ is not read \(\d+ bytes unsent\): dropped")
    return sent


def read_head(sock: socket.socket, limit: int = 65536) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and whatever body bytes came with them (bounded)."""
    data = b""
    while b"\r\n\r\n" not in data and len(data) < limit:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {n.strip().lower(): v.strip() for n, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, rest


class ProxyProcess:
    """``blocking_proxy.py``: a Twisted reverse proxy to the gateway that refuses
    WebSocket upgrades (and, with ``block_sse``, event streams; with
    ``hold_sse`` it holds their bodies back)."""

    def __init__(self, target_port: int, block_sse: bool = False, hold_sse: bool = False) -> None:
        command = [sys.executable, PROXY, str(target_port)]
        command += (["--block-sse"] if block_sse else []) + (["--hold-sse"] if hold_sse else [])
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._ready = threading.Event()
        self.port = 0
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(15) or not self.port:
            self.stop()
            raise AssertionError(f"proxy did not start: {self.lines}")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            match = re.search(r"proxy listening on (\d+)", line)
            if match:
                self.port = int(match.group(1))
                self._ready.set()
        self._ready.set()

    def saw(self, pattern: str) -> bool:
        return any(re.search(pattern, line) for line in list(self.lines))

    def stop(self) -> None:
        stop_process(self.proc)


# --- fixtures and helpers shared by the bridge test modules ---------------------


def error_of(reply: Reply, status: int, code: str, message: str | None = None) -> dict[str, Any]:
    """Assert an error answer with this HTTP status and code; its payload."""
    assert reply.status == status, reply
    return expect_error(reply.body, code, message)


def bridge_node(gateway: GatewayProcess, name: str, room: str | None = None) -> BridgeNode:
    """A registered bridge node, in ``room`` when given."""
    node = BridgeNode(gateway.port)
    assert node.register(name).status == 200
    if room is not None:
        assert node.join(room).status == 200
    return node
