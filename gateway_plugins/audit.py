"""Denials reported to the sidecar's audit log, fire-and-forget.

A bounded queue drained by one background task: a slow or absent sidecar drops events
(counted in metrics) but never delays a request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from gateway_plugins import metrics
from gateway_plugins.background import BackgroundTask

log = logging.getLogger(__name__)

Sender = Callable[[dict[str, Any]], Awaitable[None]]


class DenialReporter:
    def __init__(self, send: Sender, max_queue: int = 1000) -> None:
        self._send = send
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(max_queue)
        self._drainer = BackgroundTask(self._drain)

    def report(self, event: dict[str, Any]) -> None:
        """Enqueue one denial; never blocks, drops when full."""
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            metrics.AUDIT_DROPPED.inc()
            return
        self._drainer.start()

    async def _drain(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                await self._send(event)
            except Exception as exc:  # any failure: count, log, carry on
                metrics.AUDIT_DROPPED.inc()
                log.warning("denial audit not delivered: %s", type(exc).__name__)

    async def aclose(self, grace: float = 2.0) -> None:
        """Give queued events up to ``grace`` seconds to go out, then stop."""
        if not self._drainer.started:
            return
        deadline = time.monotonic() + grace
        while not self._queue.empty() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        await self._drainer.stop()
