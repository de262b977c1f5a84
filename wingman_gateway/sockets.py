"""What the gateway reads and does at the socket under a transport.

Twisted's TCP transport keeps its unsent data in ``FileDescriptor``'s
``dataBuffer``/``offset``/``_tempDataBuffer``; the outbound guards read
how much waits there, and ``direct_writer`` sends at once when nothing
does. Everything that knows those attributes lives here.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet import tcp
from twisted.protocols.policies import ProtocolWrapper


def socket_transport(transport: Any) -> Any:
    """The socket-level transport under any wrapping (TLS, SSH, the listener's door), or None.

    A ``ProtocolWrapper`` forwards attribute reads to its transport, so it
    would pass for the socket; it is looked through like the others.
    """
    seen = 0
    while transport is not None and seen < 4:
        if (not isinstance(transport, ProtocolWrapper) and hasattr(transport, "dataBuffer")
                and hasattr(transport, "_tempDataLen")):
            return transport
        transport = getattr(transport, "transport", None)
        seen += 1
    return None


def unsent_bytes(sock: Any) -> int:
    """Bytes written to a socket-level transport but not yet handed to the kernel."""
    if sock is None:
        return 0
    unsent: int = len(sock.dataBuffer) - sock.offset + sock._tempDataLen
    return unsent


def set_no_delay(transport: Any) -> bool:
    """Turn on TCP_NODELAY on the socket under ``transport``, if it is TCP."""
    sock = socket_transport(transport)
    if sock is None or not hasattr(sock, "setTcpNoDelay"):
        return False
    try:
        sock.setTcpNoDelay(True)
    except OSError:
        return False
    return True


def plain_tcp(transport: Any) -> tcp.Connection | None:
    """The TCP connection ``transport`` writes to unchanged, or None.

    Only protocol wrappers that forward writes as they are (the listener's
    door) may stand between; TLS, SSH or anything else that changes the
    bytes gives None.
    """
    seen = 0
    while type(transport).write is ProtocolWrapper.write and seen < 4:
        transport = transport.transport
        seen += 1
    if isinstance(transport, tcp.Connection) and not getattr(transport, "TLS", False):
        return transport
    return None


def direct_writer(transport: Any) -> Callable[[bytes], None]:
    """A write function for ``transport`` that sends at once when it can.

    Twisted queues every write and sends it when epoll next says the
    socket is writable: per burst of writes one ``epoll_ctl`` to watch for
    writing, one poll event (with its log context), the send, and one
    ``epoll_ctl`` to stop watching. A client that keeps up almost always
    has room in its socket buffer, so sending at once saves all but the
    send. Only when nothing is queued before it, so bytes keep their
    order, and never once the connection is closing or aborted. The
    socket's ``send`` is called as Twisted's ``writeSomeData`` calls it,
    without its wrapping; what the kernel does not take (a full buffer,
    an error) goes to the transport's own ``write``, whose buffering,
    producer pausing and connection-loss handling are unchanged. Over TLS
    or SSH it is the transport's ``write`` itself.

    Call it where a turn's writes are gathered (``connection.Coalescer``):
    10,000 nodes reconnecting then cost the gateway 10-20% less CPU
    (``benchmarks/loadgen.py storm``). Sent one by one as reads come in,
    each answer wakes its client sooner and the next poll brings fewer
    events at a time: measured, set-up got 5-10% dearer that way.
    """
    sock = plain_tcp(transport)
    if sock is None:
        write: Callable[[bytes], None] = transport.write
        return write
    queue = sock.write

    def send(data: bytes) -> None:
        if (sock.connected and not sock.disconnecting and not sock._aborting and not sock._writeDisconnected
                and not unsent_bytes(sock)):
            try:
                sent = sock.socket.send(data)
            except OSError:  # a full buffer, or a broken connection the transport's write then finds
                sent = 0
            if sent == len(data):
                return
            if sent:
                data = data[sent:]
        queue(data)

    return send
