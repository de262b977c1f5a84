"""``async for message in node``: one buffered, ordered feed per loop."""

from __future__ import annotations

from collections import deque
from typing import Any

from wingman_gateway.protocol.message import Message
from wingman_gateway.protocol.runtime import Runtime

_END = object()


class MessageStream:
    """Messages delivered since this stream was made, in order, until ``end()``.

    The node holds streams weakly, so a loop that is abandoned (``break``)
    stops buffering once the stream is garbage; ``aclose()`` stops it at once.
    A consumer whose wait is cancelled loses nothing: later messages are
    buffered for its next ``__anext__``.
    """

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._buffer: deque[Message] = deque()
        self._waiting: Any = None
        self.ended = False

    def push(self, message: Message) -> None:
        if self.ended:
            return
        waiting, self._waiting = self._waiting, None
        if waiting is not None and not self._runtime.is_done(waiting):
            self._runtime.resolve(waiting, message)
        else:
            self._buffer.append(message)

    def end(self) -> None:
        """No more messages will come; buffered ones are still yielded."""
        self.ended = True
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            self._runtime.resolve(waiting, _END)

    def __aiter__(self) -> "MessageStream":
        return self

    async def __anext__(self) -> Message:
        if self._buffer:
            return self._buffer.popleft()
        if self.ended:
            raise StopAsyncIteration
        self._waiting = self._runtime.future()
        item = await self._waiting
        if item is _END:
            raise StopAsyncIteration
        assert isinstance(item, Message)
        return item

    async def aclose(self) -> None:
        self.end()
        self._buffer.clear()
