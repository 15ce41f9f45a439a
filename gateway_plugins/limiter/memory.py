"""In-process limiter for a single gateway node.

Counters live in a dict (the event loop serialises check-and-count, no lock needed).
Quota counters (day, month) are written to a SQLite file by a background flush every
``flush_seconds`` and at close, and read back at start, so a restart does not reset a
tenant's quota; a crash loses at most one flush interval of counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Mapping
from pathlib import Path

from gateway_plugins.background import BackgroundTask
from gateway_plugins.limiter.base import (
    UNLIMITED,
    Clock,
    LimitResult,
    check_counts,
    summarize,
    token_windows,
    wall_clock,
    windows_for,
)
from hanzo_contract.principal import Limits

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS quota_counters (
    key TEXT PRIMARY KEY, count INTEGER NOT NULL, expires_at REAL NOT NULL
)
"""


class MemoryLimiter:
    def __init__(
        self, db_path: Path | None = None, flush_seconds: float = 1.0, clock: Clock = wall_clock
    ) -> None:
        self._clock = clock
        self._counts: dict[str, int] = {}
        self._expires: dict[str, float] = {}
        self._dirty: set[str] = set()
        self._db_path = db_path
        self._flush_seconds = flush_seconds
        self._flusher = BackgroundTask(self._flush_loop)
        self._last_sweep = clock()
        if db_path is not None:
            self._load(db_path)

    def _connect(self) -> sqlite3.Connection:
        assert self._db_path is not None
        self._db_path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self._db_path, timeout=5)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(_SCHEMA)
        return conn

    def _load(self, db_path: Path) -> None:
        now = self._clock()
        with contextlib.closing(self._connect()) as conn:
            rows = conn.execute(
                "SELECT key, count, expires_at FROM quota_counters WHERE expires_at > ?", (now,)
            ).fetchall()
        for key, count, expires_at in rows:
            self._counts[key] = count
            self._expires[key] = expires_at

    async def hit(
        self,
        buckets: list[str],
        limits: Limits,
        cost: int = 1,
        bucket_limits: Mapping[str, Limits] | None = None,
    ) -> LimitResult:
        now = self._clock()
        windows = windows_for(buckets, limits, now, bucket_limits)
        if not windows:
            return UNLIMITED
        if now - self._last_sweep > 60:
            self._sweep(now)
        counts = self._counts
        current = [counts.get(w.key, 0) for w in windows]
        for i, w in enumerate(windows):
            if current[i] + cost > w.limit:
                return summarize(windows, current, i)
        for i, w in enumerate(windows):
            current[i] += cost
            counts[w.key] = current[i]
            if w.key not in self._expires:
                self._expires[w.key] = now + w.ttl
            if not w.key.startswith("rpm:"):
                self._dirty.add(w.key)
        if self._dirty and self._db_path is not None:
            self._flusher.start()
        return summarize(windows, current, None)

    async def check_tokens(self, buckets: list[str], limits: Limits) -> LimitResult:
        windows = token_windows(buckets, limits, self._clock())
        if not windows:
            return UNLIMITED
        return check_counts(windows, [self._counts.get(w.key, 0) for w in windows])

    async def charge_tokens(self, buckets: list[str], limits: Limits, tokens: int) -> None:
        if tokens <= 0:
            return
        now = self._clock()
        for w in token_windows(buckets, limits, now):
            self._counts[w.key] = self._counts.get(w.key, 0) + tokens
            self._expires.setdefault(w.key, now + w.ttl)
            self._dirty.add(w.key)
        if self._dirty and self._db_path is not None:
            self._flusher.start()

    def _sweep(self, now: float) -> None:
        self._last_sweep = now
        for key in [k for k, exp in self._expires.items() if exp <= now]:
            self._counts.pop(key, None)
            self._expires.pop(key, None)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self._flush_seconds)
            try:
                await self.flush()
            except (sqlite3.Error, OSError):
                log.exception("quota flush failed; will retry")

    async def flush(self) -> None:
        """Write changed quota counters to SQLite (off the event loop)."""
        if not self._dirty or self._db_path is None:
            return
        rows = [(k, self._counts.get(k, 0), self._expires.get(k, 0.0)) for k in self._dirty]
        self._dirty = set()
        await asyncio.to_thread(self._write, rows)

    def _write(self, rows: list[tuple[str, int, float]]) -> None:
        with contextlib.closing(self._connect()) as conn, conn:
            conn.executemany(
                "INSERT INTO quota_counters (key, count, expires_at) VALUES (?, ?, ?)"
                " ON CONFLICT(key) DO UPDATE SET count = excluded.count,"
                " expires_at = excluded.expires_at",
                rows,
            )
            conn.execute("DELETE FROM quota_counters WHERE expires_at <= ?", (self._clock(),))

    async def aclose(self) -> None:
        await self._flusher.stop()
        await self.flush()
