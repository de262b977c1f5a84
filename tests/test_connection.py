"""``connection.unsent_bytes`` reads Twisted's private write-buffer fields.

It is the one place that does; this test fails loudly (naming the fields)
if a Twisted upgrade renames them, instead of letting the outbound bound
silently read zero.
"""

from __future__ import annotations

from twisted.internet.abstract import FileDescriptor
from twisted.internet.testing import MemoryReactor

from wingman_gateway.connection import socket_transport, unsent_bytes

FIELDS = ("dataBuffer", "offset", "_tempDataLen")


class Unwritten(FileDescriptor):
    """A socket-level transport that never gets to write to the kernel."""

    def writeSomeData(self, data: bytes) -> int:
        return 0


def test_twisted_still_has_the_write_buffer_fields() -> None:
    transport = Unwritten(reactor=MemoryReactor())
    missing = [name for name in FIELDS if not hasattr(transport, name)]
    assert missing == [], f"Twisted no longer has {missing}: update connection.unsent_bytes"


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
