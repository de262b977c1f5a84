"""The WebSocket transport on asyncio: the ``websockets`` library behind the core's ``Transport``."""

from __future__ import annotations

import asyncio
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from wingman_gateway.aio.reach import proxy_for
from wingman_gateway.aio.tls import client_context, tls_text
from wingman_gateway.protocol.errors import CONNECTION_FAILED, NOT_CONNECTED, TLS_ERROR, ClientError
from wingman_gateway.protocol.runtime import CLOSE_NORMAL, Receiver

# WebSocket-level pings find a gateway that vanished without closing TCP
# (the gateway's own JSON heartbeat is answered by the core).
PING_INTERVAL = 20.0
PING_TIMEOUT = 20.0
# Above the gateway's largest envelope (1 MiB payloads by default).
MAX_FRAME = 16 * 1024 * 1024


class WebSocketTransport:
    """One WebSocket connection to ``url`` (``ws://`` or ``wss://``)."""

    def __init__(
        self, url: str, receiver: Receiver, *, ca_file: str | None = None, timeout: float = 10.0,
        tor_socks: str | None = None,
    ) -> None:
        self.url = url
        self._tor_socks = tor_socks  # the SOCKS endpoint for a .onion host
        self._receiver = receiver
        self._ca_file = ca_file
        self._timeout = timeout
        self._socket: ClientConnection | None = None
        self._outbox: asyncio.Queue[str | None] = asyncio.Queue()
        self._tasks: list[asyncio.Task[Any]] = []
        self._finished = False
        self._close_args = (CLOSE_NORMAL, "")

    async def open(self) -> None:
        secure = self.url.lower().startswith("wss:")
        options: dict[str, Any] = {}
        if secure:
            options["ssl"] = client_context(self._ca_file)
        proxy = proxy_for(self.url, self._tor_socks)  # .onion: through Tor, else direct
        try:
            self._socket = await ws_connect(
                self.url, open_timeout=self._timeout, ping_interval=PING_INTERVAL,
                ping_timeout=PING_TIMEOUT, max_size=MAX_FRAME, proxy=proxy, **options,
            )
        except InvalidStatus as error:
            status = error.response.status_code
            raise ClientError(
                CONNECTION_FAILED, f"no WebSocket connection to {self.url}: HTTP {status}"
            ) from None
        except (InvalidHandshake, InvalidURI, OSError, TimeoutError) as error:
            tls = tls_text(error)
            if tls is not None:
                raise ClientError(TLS_ERROR, f"{self.url}: {tls}") from None
            raise ClientError(CONNECTION_FAILED, f"cannot connect to {self.url}: {error}") from None
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._read()), loop.create_task(self._write())]

    def send_text(self, text: str) -> None:
        if self._socket is None or self._finished:
            raise ClientError(NOT_CONNECTED, "the connection is not open")
        self._outbox.put_nowait(text)

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        if self._socket is None or self._finished:
            return
        self._close_args = (code, reason)
        self._outbox.put_nowait(None)  # after what is queued

    async def _write(self) -> None:
        assert self._socket is not None
        try:
            while True:
                text = await self._outbox.get()
                if text is None:
                    await self._socket.close(*self._close_args)
                    return
                await self._socket.send(text)
        except ConnectionClosed:
            return

    async def _read(self) -> None:
        socket = self._socket
        assert socket is not None
        try:
            async for frame in socket:
                text = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
                self._receiver.text_received(text)
        except ConnectionClosed:
            pass
        finally:
            self._finished = True
            for task in self._tasks:
                if task is not asyncio.current_task():
                    task.cancel()
        self._receiver.connection_lost(socket.close_code, socket.close_reason or "")
