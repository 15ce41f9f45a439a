"""The one place that turns settings into a backend.

Each engine's module is imported only when it is chosen, so a host without LanceDB (or
the Redis client) installed still runs the SQLite backend.
"""

from __future__ import annotations

from memory_service.backends.base import MemoryBackend
from memory_service.settings import MemorySettings


def make_backend(settings: MemorySettings) -> MemoryBackend:
    """The backend the settings name."""
    if settings.backend == "sqlite":
        from memory_service.backends.sqlite import SqliteBackend

        return SqliteBackend(settings.data_dir / "memory.sqlite3", settings.embedding_dim)
    if settings.backend == "lancedb":
        from memory_service.backends.lance import LanceBackend

        return LanceBackend(settings.data_dir / "lancedb", settings.embedding_dim)
    if settings.backend == "postgres":
        from memory_service.backends.postgres import backend_from_settings

        return backend_from_settings(settings)
    from memory_service.backends.redis import RedisBackend

    return RedisBackend(settings.redis_url, settings.embedding_dim, settings.redis_ef_runtime)
