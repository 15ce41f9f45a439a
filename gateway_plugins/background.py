"""One background task started on first use and stopped by cancelling it.

The denial reporter, the usage reporter and the in-process limiter's quota flush each
run one such task; they share this start-once and cancel-and-wait shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Callable, Coroutine
from typing import Any


class BackgroundTask:
    def __init__(self, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._run = run
        self._task: asyncio.Task[None] | None = None

    @property
    def started(self) -> bool:
        return self._task is not None

    def start(self) -> None:
        """Start the task on the running loop, unless it already runs."""
        if self._task is None:
            # a context of its own: not the request id or trace of the request that started it
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._run(), context=contextvars.Context())

    async def stop(self) -> None:
        """Cancel the task and wait for it to end; it may be started again later."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
