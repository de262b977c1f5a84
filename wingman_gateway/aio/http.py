"""The HTTP bridge transport on asyncio (``httpx``): POST to send; an event
stream, or long polling where a stream cannot be had, to receive.

What to request, and what the answers mean, is ``BridgeCore``'s; this
module only makes the requests and keeps the timers it asks for.
"""

from __future__ import annotations

import asyncio
from typing import Any, Iterator

import httpx

from wingman_gateway.aio.runtime import FormatLog
from wingman_gateway.aio.reach import REQUEST_ERRORS, httpx_options
from wingman_gateway.aio.tls import tls_text
from wingman_gateway.protocol.bridge_actions import STREAM, Action, Lost, Request, perform
from wingman_gateway.protocol.bridge_core import BridgeCore
from wingman_gateway.protocol.errors import NOT_CONNECTED, ClientError
from wingman_gateway.protocol.runtime import CLOSE_NORMAL, Receiver

# The gateway sends a keepalive comment every 15 s (by default): a stream
# silent for this long is broken.
STREAM_IDLE = 60.0


class HttpTransport:
    """One bridge session with a gateway at ``url`` (``http://`` or ``https://``)."""

    def __init__(
        self, url: str, receiver: Receiver, *, ca_file: str | None = None, timeout: float = 10.0,
        stream: bool = True, tor_socks: str | None = None,
    ) -> None:
        self.url = url
        self._tor_socks = tor_socks  # the SOCKS endpoint for a .onion host
        self._core = BridgeCore(url, log=FormatLog("wingman_gateway.aio.http"), timeout=timeout, stream=stream)
        self._receiver = receiver
        self._ca_file = ca_file
        self._timeout = timeout
        self._http: httpx.AsyncClient | None = None
        self._opening: asyncio.Future[None] | None = None
        self._tasks: dict[Request, asyncio.Task[Any]] = {}  # cancelled when the session ends
        self._reads: set[Request] = set()  # streams whose bodies are wanted
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._closing: asyncio.Task[Any] | None = None

    @property
    def streaming(self) -> bool:
        """False once fallen back to long polling."""
        return self._core.streaming

    # -- the core's Transport -------------------------------------------------

    async def open(self) -> None:
        """Probe the bridge with a ``ping``: reachable, bridged, TLS verified."""
        options = httpx_options(self._core.url, ca_file=self._ca_file, timeout=self._timeout, socks=self._tor_socks)
        self._http = httpx.AsyncClient(**options)
        self._opening = asyncio.get_running_loop().create_future()
        self._run(self._core.open())
        try:
            await self._opening
        except BaseException:
            self._core.abandon()
            self._stop_all()
            await self._http.aclose()
            raise

    def send_text(self, text: str) -> None:
        self._run(self._core.send(text))

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        self._run(self._core.close(code, reason))

    # -- the core's driver ---------------------------------------------

    def _run(self, actions: Iterator[Action]) -> None:
        perform(actions, self)

    def request(self, request: Request) -> None:
        task = asyncio.get_running_loop().create_task(self._perform(request))
        # Cancelled when the connection ends, so no request outlives it.
        self._tasks[request] = task
        task.add_done_callback(lambda _: self._tasks.pop(request, None))

    async def _perform(self, request: Request) -> None:
        assert self._http is not None
        if request.kind == STREAM:
            await self._stream(request)
            return
        try:
            response = await self._http.request(
                request.method, request.url, content=request.body, headers=request.headers, timeout=request.timeout,
            )
        except REQUEST_ERRORS as error:
            self._failed(request, error)
            return
        self._run(self._core.answered(request, response.status_code, response.content))

    def _failed(self, request: Request, error: BaseException, timed_out: bool = False) -> None:
        tls = tls_text(error)
        text = (str(error) or type(error).__name__) if tls is None else tls
        self._run(self._core.failed(request, text, tls=tls is not None, timed_out=timed_out))

    async def _stream(self, request: Request) -> None:
        """One event stream: its answer, then its body as it comes, to its end."""
        assert self._http is not None
        timeout = httpx.Timeout(self._timeout, read=STREAM_IDLE)
        asked = self._http.build_request("GET", request.url, headers=request.headers, timeout=timeout)
        try:
            response = await asyncio.wait_for(self._http.send(asked, stream=True), request.timeout)
        except TimeoutError as error:
            self._failed(request, error, timed_out=True)
            return
        except REQUEST_ERRORS as error:
            self._failed(request, error)
            return
        try:
            kind = response.headers.get("content-type", "")
            self._run(self._core.answered(request, response.status_code, b"", kind))
            if request not in self._reads:
                return
            try:
                async for chunk in response.aiter_bytes():
                    self._run(self._core.received(request, chunk))
                    if not self._core.wants(request):
                        return
            except REQUEST_ERRORS as error:
                self._failed(request, error)
                return
            self._run(self._core.ended(request, "stream ended"))
        finally:
            self._reads.discard(request)
            await response.aclose()

    def deliver(self, text: str) -> None:
        self._receiver.text_received(text)

    def later(self, timer: str, delay: float) -> None:
        self.cancel(timer)
        self._timers[timer] = asyncio.get_running_loop().call_later(delay, self._fire, timer)

    def _fire(self, timer: str) -> None:
        self._timers.pop(timer, None)
        self._run(self._core.fire(timer))

    def cancel(self, timer: str) -> None:
        call = self._timers.pop(timer, None)
        if call is not None:
            call.cancel()

    def read(self, request: Request) -> None:
        self._reads.add(request)

    def stop(self, request: Request) -> None:
        self._reads.discard(request)
        task = self._tasks.pop(request, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    def opened(self) -> None:
        if self._opening is not None and not self._opening.done():
            self._opening.set_result(None)

    def open_failed(self, error: ClientError) -> None:
        if self._opening is not None and not self._opening.done():
            self._opening.set_exception(error)

    def lost(self, lost: Lost) -> None:
        self._stop_all()
        if self._opening is not None and not self._opening.done():
            self._opening.set_exception(ClientError(NOT_CONNECTED, "the connection was closed while opening"))
        if self._http is not None:
            self._closing = asyncio.get_running_loop().create_task(self._farewell(lost.farewell))
        if lost.notify:
            self._receiver.connection_lost(lost.code, lost.reason)

    async def _farewell(self, farewell: Request | None) -> None:
        assert self._http is not None
        try:
            if farewell is not None:
                await self._perform(farewell)
        finally:
            await self._http.aclose()

    def _stop_all(self) -> None:
        for timer in list(self._timers):
            self.cancel(timer)
        for request in list(self._tasks):
            self.stop(request)
