"""``sockets``: what the gateway reads and does under Twisted's TCP transport.

``unsent_bytes`` and ``direct_writer`` read Twisted's private write-buffer
fields; the first test fails loudly (naming the fields) if a Twisted
upgrade renames them, instead of letting the outbound bound silently read
zero or a direct write jump a queue. The others run over real loopback
connections (TCP and TLS) on the reactor.
"""

from __future__ import annotations

import socket
import struct
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet import reactor, tcp
from twisted.internet.abstract import FileDescriptor
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionClosed
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, serverFromString, wrapClientTLS
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.internet.testing import MemoryReactor
from twisted.protocols.policies import WrappingFactory
from twisted.python.failure import Failure

from harness.support import make_pki
from wingman_gateway.sockets import direct_writer, plain_tcp, socket_transport, unsent_bytes

FIELDS = ("dataBuffer", "offset", "_tempDataLen", "_writeDisconnected", "disconnecting", "connected")
TCP_FIELDS = ("_aborting", "TLS")
CHUNK = 64 * 1024


class Unwritten(FileDescriptor):
    """A socket-level transport that never gets to write to the kernel."""

    def writeSomeData(self, data: bytes) -> int:
        return 0


def test_twisted_still_has_the_write_buffer_fields() -> None:
    transport = Unwritten(reactor=MemoryReactor())
    missing = [name for name in FIELDS if not hasattr(transport, name)]
    assert missing == [], f"Twisted no longer has {missing}: update wingman_gateway.sockets"
    missing += [name for name in TCP_FIELDS if not hasattr(tcp.Connection, name)]
    assert missing == [], f"Twisted no longer has {missing}: update wingman_gateway.sockets"
    assert callable(tcp.Connection.writeSomeData)


def test_unsent_bytes_counts_what_was_written_but_not_sent() -> None:
    transport = Unwritten(reactor=MemoryReactor())
    transport.connected = True
    assert unsent_bytes(transport) == 0
    transport.write(b"x" * 1000)
    transport.writeSequence([b"y" * 24, b"z" * 100])
    assert unsent_bytes(transport) == 1124
    transport.doWrite()  # moves the pending pieces into dataBuffer; the kernel takes none
    assert unsent_bytes(transport) == 1124


def test_the_socket_transport_is_found_under_wrappers() -> None:
    transport = Unwritten(reactor=MemoryReactor())

    class Wrapper:
        def __init__(self, inner: object) -> None:
            self.transport = inner

    assert socket_transport(Wrapper(Wrapper(transport))) is transport
    assert socket_transport(object()) is None and unsent_bytes(None) == 0


class Served(Protocol):
    """The server's side: hands itself to the test once connected, keeps what it is told of its end."""

    def __init__(self, connected: Deferred[Served]) -> None:
        self.connected_once = connected
        self.lost: Deferred[None] = Deferred()
        self.reason: Failure | None = None

    def connectionMade(self) -> None:
        self.connected_once.callback(self)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.reason = reason
        self.lost.callback(None)


class Reader(Protocol):
    """The client's side: keeps every byte, and says when it has ``expected`` of them."""

    def __init__(self, expected: int) -> None:
        self.received = bytearray()
        self.expected = expected
        self.complete: Deferred[bytes] = Deferred()
        self.gone: Deferred[None] = Deferred()

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.gone.callback(None)

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if len(self.received) >= self.expected and not self.complete.called:
            self.complete.callback(bytes(self.received))


async def _listen(listen: str = "tcp:0:interface=127.0.0.1") -> tuple[Any, Deferred[Served]]:
    """A listener whose protocols sit under a ``ProtocolWrapper`` (as the
    gateway's sit under its door): the port, and its first connection's server side."""
    made: Deferred[Served] = Deferred()
    inner = Factory.forProtocol(lambda: Served(made))  # type: ignore[arg-type]
    port = await serverFromString(reactor, listen).listen(WrappingFactory(inner))
    return port, made


async def _pair(expected: int, listen: str = "tcp:0:interface=127.0.0.1", tls: Any = None
                ) -> tuple[Served, Reader, Any]:
    """A connection through ``_listen``'s listener: the server's side, the client's, the port."""
    port, made = await _listen(listen)
    client: Any = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
    if tls is not None:
        client = wrapClientTLS(tls, client)
    reader = await connectProtocol(client, Reader(expected))
    served = await made.addTimeout(10, reactor)
    return served, reader, port


def _numbered(count: int) -> list[bytes]:
    return [struct.pack(">I", n) * (CHUNK // 4) for n in range(count)]


@pytest_twisted.ensureDeferred
async def test_a_direct_write_reaches_the_kernel_before_the_reactor_turns() -> None:
    served, reader, port = await _pair(5)
    try:
        sock = plain_tcp(served.transport)
        assert isinstance(sock, tcp.Server), "the listener's wrapper forwards writes unchanged"
        assert socket_transport(served.transport) is sock  # looked through, not taken for the socket
        write = direct_writer(served.transport)
        write(b"hello")
        assert unsent_bytes(sock) == 0  # sent, not queued for the next poll
        assert await reader.complete.addTimeout(10, reactor) == b"hello"
        served.transport.write(b"")  # the transport's own write still works alongside
    finally:
        reader.transport.loseConnection()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_what_the_kernel_does_not_take_is_queued_and_arrives_in_order() -> None:
    chunks = _numbered(96)  # 6 MiB: more than both kernel buffers of a paused reader
    served, reader, port = await _pair(len(chunks) * CHUNK)
    try:
        # A fixed, small receive buffer (no autotuning): a paused reader fills it soon, on any machine.
        reader.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CHUNK)
        reader.transport.pauseProducing()
        write = direct_writer(served.transport)
        sock = plain_tcp(served.transport)
        queued_at = None
        for n, chunk in enumerate(chunks):
            write(chunk)
            if queued_at is None and unsent_bytes(sock) > 0:
                queued_at = n
        assert queued_at is not None and queued_at < len(chunks) - 1, "the kernel never filled"
        assert unsent_bytes(sock) >= (len(chunks) - queued_at - 1) * CHUNK  # later writes queued whole
        reader.transport.resumeProducing()
        assert await reader.complete.addTimeout(20, reactor) == b"".join(chunks)
    finally:
        reader.transport.loseConnection()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_over_tls_the_writer_is_the_tls_layers_own(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    trust = optionsForClientTLS("localhost", trustRoot=Certificate.loadPEM(pki.ca.read_bytes()))
    served, reader, port = await _pair(8, pki.endpoint(), trust)
    try:
        assert plain_tcp(served.transport) is None
        write = direct_writer(served.transport)
        assert write == served.transport.write
        write(b"over ")
        write(b"TLS")
        assert await reader.complete.addTimeout(10, reactor) == b"over TLS"  # through TLS, not around it
    finally:
        reader.transport.loseConnection()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_write_to_a_reset_connection_loses_it_quietly_and_later_writes_are_dropped() -> None:
    port, made = await _listen()
    try:
        client = socket.create_connection(("127.0.0.1", port.getHost().port), timeout=5)
        served = await made.addTimeout(10, reactor)
        write = direct_writer(served.transport)
        # A reset: the server's socket hears of it at once (loopback), before its reactor reads.
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
        write(b"to a peer that is gone")
        await served.lost.addTimeout(10, reactor)
        assert served.reason is not None and served.reason.check(ConnectionClosed), served.reason
        sock = plain_tcp(served.transport)
        unsent = unsent_bytes(sock)
        write(b"after the loss")  # dropped, as the transport's write drops it
        assert unsent_bytes(sock) == unsent
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_nothing_is_sent_once_the_connection_is_aborted() -> None:
    served, reader, port = await _pair(6)
    try:
        write = direct_writer(served.transport)
        write(b"before")
        assert await reader.complete.addTimeout(10, reactor) == b"before"
        served.transport.abortConnection()
        write(b"after the abort")  # Twisted's own write would never send it either
        await served.lost.addTimeout(10, reactor)
        await reader.gone.addTimeout(10, reactor)
        assert bytes(reader.received) == b"before"
    finally:
        await port.stopListening()
