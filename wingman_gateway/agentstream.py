"""Agent-stream events: one answer as ``agent-start``, ``agent-stream`` chunks,
``tool-start``/``tool-end`` and ``agent-complete`` or ``agent-error``.

These ride inside broadcast (or direct) payloads; every UI (the terminal's
``wingman gateway join``, web pages, other agents) reads the same fields.
The helpers work with either Python client (anything with an awaitable
``broadcast(room, payload)`` and ``direct(node_id, payload)``)::

    async with answer(node, "alpha", prompt=prompt, agent="model") as reply:
        async for token in model.stream(prompt):
            await reply.send(token)
"""

from __future__ import annotations

import time
import traceback
from types import TracebackType
from typing import Any, AsyncIterator

AGENT_EVENTS = frozenset(
    {"agent-start", "agent-stream", "agent-complete", "agent-error", "tool-start", "tool-end"}
)


def chunk_text(chunk: Any) -> str:
    """The text tokens in a raw stream chunk, whatever its common shape."""
    if isinstance(chunk, str):
        return chunk
    if isinstance(chunk, list):
        return "".join(chunk_text(part) for part in chunk)
    if isinstance(chunk, dict):
        for key in ("text", "content", "delta", "token"):
            if isinstance(chunk.get(key), (str, list)):
                return chunk_text(chunk[key])
        data = chunk.get("data")
        if isinstance(data, dict) and "chunk" in data:
            return chunk_text(data["chunk"])
        if "chunk" in chunk:
            return chunk_text(chunk["chunk"])
    return ""


def event(kind: str, **fields: Any) -> dict[str, Any]:
    """One agent-stream payload, stamped with the time in milliseconds."""
    return {"type": kind, **fields, "timestamp": int(time.time() * 1000)}


class Answer:
    """One answer being streamed; made by ``answer()``.

    ``send(chunk)`` forwards a model's chunk as it is (a text token, or the
    framework's raw chunk); ``tool(name, input)`` brackets a tool call. On a
    clean exit ``agent-complete`` carries ``result`` (by default
    ``{"response": the text of every chunk}``); an exception sends
    ``agent-error`` and is raised again.
    """

    def __init__(
        self, node: Any, room: str | None, prompt: str, agent: str, *,
        to: str | None = None, session_id: str | None = None,
    ) -> None:
        if (room is None) == (to is None):
            raise ValueError("answer in a room or to a node (to=NODE_ID), not both")
        self.node = node
        self.room = room
        self.to = to
        self.prompt = prompt
        self.agent = agent
        self.session_id = session_id
        self.text = ""
        self.result: Any = None

    async def emit(self, payload: dict[str, Any]) -> None:
        if self.to is not None:
            await self.node.direct(self.to, payload)
        else:
            await self.node.broadcast(self.room, payload)

    async def start(self) -> None:
        fields: dict[str, Any] = {"agent": self.agent, "prompt": self.prompt}
        if self.session_id is not None:
            fields["sessionId"] = self.session_id
        await self.emit(event("agent-start", **fields))

    async def send(self, chunk: Any) -> None:
        """One ``agent-stream`` event with ``chunk`` as it is."""
        self.text += chunk_text(chunk)
        await self.emit(event("agent-stream", chunk=chunk))

    def tool(self, name: str, tool_input: Any = None) -> "ToolCall":
        """``async with reply.tool("search", {"q": ...}) as call: call.output = ...``"""
        return ToolCall(self, name, tool_input)

    async def complete(self, result: Any = None) -> None:
        await self.emit(event("agent-complete", result=result if result is not None else {"response": self.text}))

    async def fail(self, error: BaseException | str) -> None:
        fields: dict[str, Any] = {"error": str(error) or type(error).__name__}
        if isinstance(error, BaseException):
            fields["stack"] = "".join(traceback.format_exception(error))
        await self.emit(event("agent-error", **fields))

    async def __aenter__(self) -> "Answer":
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if error is None:
            await self.complete(self.result)
        elif isinstance(error, Exception):
            await self.fail(error)


class ToolCall:
    """``tool-start`` on entry, ``tool-end`` with ``output`` on exit (the error text if it failed)."""

    def __init__(self, answer: Answer, name: str, tool_input: Any) -> None:
        self.answer = answer
        self.name = name
        self.input = tool_input
        self.output: Any = None

    async def __aenter__(self) -> "ToolCall":
        await self.answer.emit(event("tool-start", toolName=self.name, toolInput=self.input))
        return self

    async def __aexit__(self, kind: Any, error: BaseException | None, trace: Any) -> None:
        output = self.output if error is None else {"error": str(error)}
        await self.answer.emit(event("tool-end", toolName=self.name, toolOutput=output))


def answer(
    node: Any, room: str | None = None, *, prompt: str, agent: str,
    to: str | None = None, session_id: str | None = None,
) -> Answer:
    """An ``async with`` block that streams one answer to ``room`` (or to node ``to``)."""
    return Answer(node, room, prompt, agent, to=to, session_id=session_id)


async def forward(node: Any, room: str, prompt: str, agent: str, chunks: AsyncIterator[Any]) -> Answer:
    """Stream every chunk of ``chunks`` as one answer; the finished ``Answer``."""
    async with answer(node, room, prompt=prompt, agent=agent) as reply:
        async for chunk in chunks:
            await reply.send(chunk)
    return reply
