"""``async for message in client``: one buffered, ordered feed per loop."""

from __future__ import annotations

from collections import deque

from twisted.internet.defer import Deferred

from wingman_gateway.client.message import Message

_END = object()


class MessageStream:
    """Messages delivered since this stream was made, in order, until ``end()``.

    The client holds streams weakly, so a loop that is abandoned (``break``)
    stops buffering once the stream is garbage; ``aclose()`` stops it at once.
    """

    def __init__(self) -> None:
        self._buffer: deque[Message] = deque()
        self._waiting: Deferred[object] | None = None
        self.ended = False

    def push(self, message: Message) -> None:
        if self.ended:
            return
        waiting, self._waiting = self._waiting, None
        if waiting is not None and not waiting.called:
            waiting.callback(message)
        else:
            self._buffer.append(message)

    def end(self) -> None:
        """No more messages will come; buffered ones are still yielded."""
        self.ended = True
        waiting, self._waiting = self._waiting, None
        if waiting is not None and not waiting.called:
            waiting.callback(_END)

    def __aiter__(self) -> "MessageStream":
        return self

    async def __anext__(self) -> Message:
        if self._buffer:
            return self._buffer.popleft()
        if self.ended:
            raise StopAsyncIteration
        self._waiting = Deferred(self._forget)
        item = await self._waiting
        if item is _END:
            raise StopAsyncIteration
        assert isinstance(item, Message)
        return item

    async def aclose(self) -> None:
        self.end()
        self._buffer.clear()

    def _forget(self, waiting: Deferred[object]) -> None:
        """The consumer cancelled its wait: later messages go to the buffer."""
        if self._waiting is waiting:
            self._waiting = None
