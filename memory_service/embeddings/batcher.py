"""Coalesce the texts of concurrent requests into shared model runs.

A model embeds 256 texts far faster than 256 requests of one text each, and a request that
arrives while the model is busy would otherwise wait for its own run. :class:`Coalescer`
keeps one run in flight: texts that arrive meanwhile queue up and go together in the next
run, and each request gets back exactly its own rows. A failed run fails only the requests
whose texts were in it; the queue moves on to the next run.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from memory_service.embeddings.base import EmbeddingError

#: a blocking function: texts in, one row per text out
EmbedFn = Callable[[list[str]], np.ndarray]


@dataclass(slots=True)
class _Ask:
    texts: list[str]
    future: asyncio.Future[np.ndarray]


class Coalescer:
    """Runs ``fn`` in a worker thread, one run at a time, over queued texts of many callers.

    ``max_texts`` bounds one run (a single larger request still goes whole, alone), so a
    burst of imports cannot make a search wait behind more than one full run.
    """

    def __init__(self, fn: EmbedFn, max_texts: int = 256) -> None:
        self._fn = fn
        # One long-lived thread for every run: big activations allocated and freed in the
        # same thread reuse one malloc arena instead of stranding memory in one per thread
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="embed-bulk")
        self._max = max_texts
        self._queue: list[_Ask] = []
        self._drain: asyncio.Task[None] | None = None
        #: texts per run so far, newest last (bounded); tests and benchmarks read it
        self.runs: list[int] = []

    async def embed(self, texts: list[str]) -> np.ndarray:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[np.ndarray] = loop.create_future()
        if self._drain is not None and self._drain.get_loop() is not loop:
            # an embedder outlived its event loop (tests): what queued there is gone with it
            self._queue = [a for a in self._queue if a.future.get_loop() is loop]
            self._drain = None
        self._queue.append(_Ask(list(texts), future))
        if self._drain is None or self._drain.done():
            # serves many requests: not the request id or trace of the one that started it
            self._drain = asyncio.create_task(self._drain_queue(), context=contextvars.Context())
        return await future

    def _take(self) -> list[_Ask]:
        """The next run: queued requests in arrival order, up to ``max_texts`` texts."""
        taken, count = [], 0
        while self._queue and (not taken or count + len(self._queue[0].texts) <= self._max):
            ask = self._queue.pop(0)
            count += len(ask.texts)
            taken.append(ask)
        return taken

    async def _drain_queue(self) -> None:
        while self._queue:
            run = [ask for ask in self._take() if not ask.future.done()]  # drop cancelled
            if not run:
                continue
            texts = [t for ask in run for t in ask.texts]
            self.runs = [*self.runs[-63:], len(texts)]
            try:
                rows = await asyncio.get_running_loop().run_in_executor(
                    self._thread, self._fn, texts
                )
                if len(rows) != len(texts):
                    raise EmbeddingError(f"model returned {len(rows)} rows for {len(texts)}")
            except Exception as exc:
                error = (
                    exc
                    if isinstance(exc, EmbeddingError)
                    else EmbeddingError(f"embedding failed: {type(exc).__name__}")
                )
                for ask in run:
                    if not ask.future.done():
                        ask.future.set_exception(error)
                continue
            start = 0
            for ask in run:
                stop = start + len(ask.texts)
                if not ask.future.done():
                    ask.future.set_result(rows[start:stop])
                start = stop
