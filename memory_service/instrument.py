"""Timings (and, when tracing is on, a span) around every backend operation and every
embedding call.

The methods are wrapped on the instance, not behind a proxy class: the service checks the
backend's type (``SealedBackend``) and must keep seeing the real one.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from hanzo_contract import telemetry
from memory_service.backends.base import MemoryBackend
from memory_service.embeddings.base import Embedder
from memory_service.metrics import (
    BACKEND_ERRORS,
    BACKEND_SECONDS,
    EMBEDDED_TEXTS,
    EMBEDDING_SECONDS,
)

#: every storage call the service makes (``MemoryBackend``'s operations)
BACKEND_OPERATIONS = (
    "upsert",
    "get",
    "find_duplicates",
    "live_with_hashes",
    "delete",
    "erase",
    "list",
    "vector_search",
    "keyword_search",
    "usage",
    "purge_expired",
    "maintain",
)


def _timed_backend_call(
    name: str, operation: str, call: Callable[..., Awaitable[Any]]
) -> Callable[..., Awaitable[Any]]:
    seconds = BACKEND_SECONDS.labels(name, operation)
    errors = BACKEND_ERRORS.labels(name, operation)

    @functools.wraps(call)
    async def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        with telemetry.span(f"backend.{operation}", "memory", **{"db.system": name}):
            try:
                return await call(*args, **kwargs)
            except Exception:
                errors.inc()
                raise
            finally:
                seconds.observe(time.perf_counter() - start)

    return timed


def instrument_backend(backend: MemoryBackend) -> MemoryBackend:
    """``backend`` with each operation timed under its name; the same object, returned."""
    if getattr(backend, "_hanzo_instrumented", False):
        return backend
    name = str(getattr(backend, "name", type(backend).__name__))
    for operation in BACKEND_OPERATIONS:
        call = getattr(backend, operation, None)
        if call is not None:
            setattr(backend, operation, _timed_backend_call(name, operation, call))
    backend._hanzo_instrumented = True  # type: ignore[attr-defined]
    return backend


def instrument_embedder(embedder: Embedder) -> Embedder:
    """``embedder`` with batch and query embedding timed; the same object, returned."""
    if getattr(embedder, "_hanzo_instrumented", False):
        return embedder
    model = embedder.model
    batch_seconds = EMBEDDING_SECONDS.labels(model, "batch")
    query_seconds = EMBEDDING_SECONDS.labels(model, "query")
    texts = EMBEDDED_TEXTS.labels(model)
    embed, embed_query = embedder.embed, embedder.embed_query

    async def timed_embed(batch: list[str]) -> Any:
        start = time.perf_counter()
        with telemetry.span("embedding.batch", "memory", texts=len(batch)):
            try:
                return await embed(batch)
            finally:
                batch_seconds.observe(time.perf_counter() - start)
                texts.inc(len(batch))

    async def timed_query(text: str) -> Any:
        start = time.perf_counter()
        with telemetry.span("embedding.query", "memory"):
            try:
                return await embed_query(text)
            finally:
                query_seconds.observe(time.perf_counter() - start)

    embedder.embed = timed_embed  # type: ignore[method-assign]
    embedder.embed_query = timed_query  # type: ignore[method-assign]
    embedder._hanzo_instrumented = True  # type: ignore[attr-defined]
    return embedder
