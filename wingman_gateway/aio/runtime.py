"""The protocol core's ``Runtime`` on asyncio: Futures, tasks, ``logging``."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Coroutine


class FormatLog:
    """The core's structured log calls (``{field}`` formats) on a ``logging`` logger."""

    def __init__(self, name: str) -> None:
        self.logger = logging.getLogger(name)

    def _log(self, level: int, format: Any, fields: dict[str, Any], exc_info: bool = False) -> None:
        if not self.logger.isEnabledFor(level):
            return
        try:
            text = str(format).format(**fields)
        except (KeyError, IndexError, ValueError):
            text = f"{format} {fields}"
        self.logger.log(level, text, exc_info=exc_info)

    def debug(self, format: Any = None, **fields: Any) -> None:
        self._log(logging.DEBUG, format, fields)

    def info(self, format: Any = None, **fields: Any) -> None:
        self._log(logging.INFO, format, fields)

    def warn(self, format: Any = None, **fields: Any) -> None:
        self._log(logging.WARNING, format, fields)

    def error(self, format: Any = None, **fields: Any) -> None:
        self._log(logging.ERROR, format, fields)

    def failure(self, format: Any, failure: Any = None, **fields: Any) -> None:
        self._log(logging.ERROR, format, fields, exc_info=True)


class AsyncioRuntime:
    """Futures of the running loop; tasks are kept referenced until they end."""

    cancelled: tuple[type[BaseException], ...] = (asyncio.CancelledError,)

    def __init__(self, namespace: str = "wingman_gateway.aio") -> None:
        self.log = FormatLog(namespace)
        self._tasks: set[asyncio.Task[Any]] = set()

    def future(self) -> asyncio.Future[Any]:
        return asyncio.get_running_loop().create_future()

    def resolve(self, future: asyncio.Future[Any], value: Any) -> None:
        if not future.done():
            future.set_result(value)

    def reject(self, future: asyncio.Future[Any], error: BaseException) -> None:
        if not future.done():
            future.set_exception(error)

    def is_done(self, future: asyncio.Future[Any]) -> bool:
        return future.done()

    async def bounded(self, awaitable: Awaitable[Any], seconds: float) -> Any:
        return await asyncio.wait_for(awaitable, seconds)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def spawn(self, coroutine: Coroutine[Any, Any, Any], what: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._ended(done, what))
        return task

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def _ended(self, task: asyncio.Task[Any], what: str) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.logger.error(what, exc_info=task.exception())
