"""The HTTP bridge transport on asyncio (``httpx``): POST to send; an event
stream, or long polling where a stream cannot be had, to receive.

Envelopes are posted one at a time, in order, to ``/bridge/send``; the
register's reply carries the session secret. Every queued message has a
sequence number: a reader that breaks resumes after the last one received,
so nothing is lost or repeated, and streamed messages are confirmed in
batches (``/bridge/ack``).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from wingman_gateway.aio.tls import client_context, tls_text
from wingman_gateway.protocol.bridge import (
    CONFIRM_DELAY,
    PING,
    POLL_TIMEOUT,
    READER_RETRIES,
    SESSION_ENDED,
    UNREGISTER,
    USER_AGENT,
    Cursor,
    closed_reason,
    is_pong,
    probe_refusal,
    session_secret,
)
from wingman_gateway.protocol.errors import CONNECTION_FAILED, NOT_CONNECTED, TLS_ERROR, ClientError
from wingman_gateway.protocol.runtime import CLOSE_NORMAL, Receiver
from wingman_gateway.protocol.sse import EventParser, StreamTooLong
from wingman_gateway.protocol.urls import bridge_base

# The gateway sends a keepalive comment every 15 s (by default): a stream
# silent for this long is broken.
STREAM_IDLE = 60.0


class _Lost(Exception):
    """The session is over (``code``, ``reason``)."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class HttpTransport:
    """One bridge session with a gateway at ``url`` (``http://`` or ``https://``)."""

    def __init__(
        self, url: str, receiver: Receiver, *, ca_file: str | None = None, timeout: float = 10.0,
        stream: bool = True,
    ) -> None:
        self.url = url
        self.streaming = stream  # False once fallen back to long polling
        self._receiver = receiver
        self._ca_file = ca_file
        self._timeout = timeout
        self._base = bridge_base(url)
        self._http: httpx.AsyncClient | None = None
        self._secret: str | None = None
        self._cursor = Cursor()
        self._outbox: asyncio.Queue[bytes] = asyncio.Queue()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._confirming: asyncio.Task[Any] | None = None
        self._is_open = False
        self._finished = False

    # -- the core's Transport -------------------------------------------------

    async def open(self) -> None:
        """Probe the bridge with a ``ping``: reachable, bridged, TLS verified."""
        verify: Any = client_context(self._ca_file) if self._base.startswith("https:") else True
        self._http = httpx.AsyncClient(
            verify=verify, timeout=self._timeout, trust_env=False, headers={"user-agent": USER_AGENT},
        )
        try:
            response = await self._post("/send", PING, session=False)
        except BaseException:
            await self._http.aclose()
            raise
        if not is_pong(response.status_code, response.content):
            await self._http.aclose()
            raise ClientError(
                CONNECTION_FAILED, f"{probe_refusal(response.status_code)} at {self.url} (HTTP {response.status_code})"
            )
        self._is_open = True
        self._spawn(self._write())

    def send_text(self, text: str) -> None:
        if not self._is_open or self._finished:
            raise ClientError(NOT_CONNECTED, "the connection is not open")
        self._outbox.put_nowait(text.encode("utf-8"))

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        if self._finished:
            return
        # HTTP has no closing handshake: end the session so that the node
        # leaves its rooms now, not when the session times out.
        self._lose(code, reason or "closed", unregister=self._secret is not None)

    # -- requests ---------------------------------------------------------------

    async def _post(self, path: str, body: bytes = b"", *, session: bool = True, query: str = "") -> httpx.Response:
        assert self._http is not None
        headers = {"content-type": "application/json"}
        if session and self._secret is not None:
            headers["x-wingman-session"] = self._secret
        try:
            return await self._http.post(self._base + path + query, content=body, headers=headers)
        except httpx.HTTPError as error:
            raise self._failure(error) from None

    def _failure(self, error: BaseException) -> ClientError:
        tls = tls_text(error)
        if tls is not None:
            return ClientError(TLS_ERROR, f"{self.url}: {tls}")
        return ClientError(CONNECTION_FAILED, f"cannot reach {self.url}: {error!r}")

    def _spawn(self, coroutine: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(self._guard(coroutine))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _guard(self, coroutine: Any) -> None:
        try:
            await coroutine
        except _Lost as lost:
            self._lose(lost.code, lost.reason)

    async def _farewell(self, alive: bool) -> None:
        if self._http is None:
            return
        try:
            if alive:
                await self._post("/send", UNREGISTER)
        except ClientError:
            pass
        finally:
            await self._http.aclose()

    # -- sending ----------------------------------------------------------------

    async def _write(self) -> None:
        """Post envelopes one at a time: order is kept."""
        while True:
            body = await self._outbox.get()
            try:
                response = await self._post("/send", body)
            except ClientError as error:
                raise _Lost(None, f"sending to {self.url} failed: {error.message}") from None
            if response.status_code == 204:
                continue
            try:
                envelope = json.loads(response.content)
                assert isinstance(envelope, dict)
            except (ValueError, AssertionError):
                raise _Lost(None, f"{self.url} answered HTTP {response.status_code}, not a bridge reply") from None
            self._reply(response.status_code, envelope, response.text)

    def _reply(self, status: int, envelope: dict[str, Any], text: str) -> None:
        given = envelope.get("payload")
        payload: dict[str, Any] = given if isinstance(given, dict) else {}
        secret = session_secret(envelope)
        if secret is not None and self._secret is None:
            self._secret = secret
            self._spawn(self._read())
        self._receiver.text_received(text)
        if status == 401 and self._secret is not None and payload.get("code") in SESSION_ENDED:
            raise _Lost(None, f"the bridge session ended: {payload.get('message')}")

    # -- reading ----------------------------------------------------------------

    async def _read(self) -> None:
        """Stream (or poll) until the session ends; a few quick retries on breaks."""
        failures = 0
        while True:
            try:
                if self.streaming:
                    flowed = await self._stream()
                else:
                    flowed = await self._poll()
            except (httpx.HTTPError, ClientError, StreamTooLong, TimeoutError) as error:
                flowed, why = False, f"reading from {self.url} failed: {error!r}"
            else:
                why = f"event stream from {self.url} ended"
            if flowed:
                failures = 0
                continue
            if failures >= len(READER_RETRIES):
                raise _Lost(None, why)
            await asyncio.sleep(READER_RETRIES[failures])
            failures += 1

    async def _stream(self) -> bool:
        """One event stream, to its end; whether anything came."""
        assert self._http is not None and self._secret is not None
        headers = {"accept": "text/event-stream", "x-wingman-session": self._secret}
        timeout = httpx.Timeout(self._timeout, read=STREAM_IDLE)
        url = f"{self._base}/sse?after={self._cursor.after}"
        async with self._http.stream("GET", url, headers=headers, timeout=timeout) as response:
            kind = response.headers.get("content-type", "")
            if response.status_code == 401:
                raise _Lost(None, "the bridge session ended (HTTP 401)")
            if response.status_code != 200 or not kind.startswith("text/event-stream"):
                self.streaming = False  # refused: poll from now on
                return True
            chunks = response.aiter_bytes()
            try:
                first = await asyncio.wait_for(anext(chunks), self._timeout)
            except (TimeoutError, StopAsyncIteration):
                self.streaming = False  # held back by a buffering proxy: poll instead
                return True
            parser = EventParser()
            self._events(parser, first)
            async for chunk in chunks:
                self._events(parser, chunk)
        return True

    def _events(self, parser: EventParser, chunk: bytes) -> None:
        for event in parser.feed(chunk):
            if event.event == "close":
                raise _Lost(*closed_reason(event.data))
            if self._cursor.take(event.id):
                self._receiver.text_received(event.data)
                self._confirm_soon()

    async def _poll(self) -> bool:
        assert self._http is not None and self._secret is not None
        url = f"{self._base}/poll?after={self._cursor.after}&timeout={POLL_TIMEOUT}"
        response = await self._http.get(
            url, headers={"x-wingman-session": self._secret}, timeout=POLL_TIMEOUT + self._timeout
        )
        if response.status_code == 401:
            raise _Lost(None, "the bridge session ended (HTTP 401)")
        try:
            body: dict[str, Any] = response.json() if response.status_code == 200 else {}
            messages = body["messages"]
        except (ValueError, TypeError, KeyError):
            return False
        for item in messages:
            if isinstance(item, dict) and self._cursor.take(item.get("seq")):
                self._receiver.text_received(json.dumps(item.get("envelope")))
        self._cursor.confirmed = self._cursor.after  # a poll's ``after`` confirms
        if isinstance(body.get("closed"), dict):
            raise _Lost(*closed_reason(json.dumps(body["closed"])))
        return True

    # -- confirming streamed messages -----------------------------------------

    def _confirm_soon(self) -> None:
        if self._confirming is None or self._confirming.done():
            self._confirming = self._spawn(self._confirm())

    async def _confirm(self) -> None:
        while self._cursor.after > self._cursor.confirmed and not self._finished:
            await asyncio.sleep(CONFIRM_DELAY)
            after = self._cursor.after
            try:
                response = await self._post("/ack", query=f"?after={after}")
            except ClientError:
                return  # the next message confirms again; a lost session shows on the reader
            if response.status_code != 204:
                return
            self._cursor.confirmed = max(self._cursor.confirmed, after)

    # -- the end ----------------------------------------------------------------

    def _lose(self, code: int | None, reason: str, unregister: bool = False) -> None:
        if self._finished:
            return
        self._finished = True
        self._closing = asyncio.get_running_loop().create_task(self._farewell(unregister))
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        if self._is_open:
            self._is_open = False
            self._receiver.connection_lost(code, reason)
