"""In-process limiter for a single gateway node.

Counters live in a dict (the event loop serialises check-and-count, no lock needed).
Quota counters (day, month) and open token reservations are written to a SQLite file by a
background flush every ``flush_seconds`` and at close, and read back at start, so a
restart does not reset a tenant's quota nor forget a reservation it must hand back; a
crash loses at most one flush interval of counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
from collections import deque
from collections.abc import Mapping
from pathlib import Path

from gateway_plugins import metrics
from gateway_plugins.background import BackgroundTask
from gateway_plugins.limiter.base import (
    DEDUP_SECONDS,
    UNLIMITED,
    Clock,
    LimitResult,
    Window,
    check_counts,
    dedup_key,
    new_reservation_id,
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
);
CREATE TABLE IF NOT EXISTS token_reservations (
    id TEXT PRIMARY KEY, tokens INTEGER NOT NULL, keys TEXT NOT NULL, expires_at REAL NOT NULL
);
"""


class _Reservation:
    """Tokens held in the counters named by ``keys`` until settled or ``expires_at``."""

    __slots__ = ("expires_at", "keys", "tokens")

    def __init__(self, tokens: int, keys: tuple[str, ...], expires_at: float) -> None:
        self.tokens, self.keys, self.expires_at = tokens, keys, expires_at


#: the most decision ids remembered (about 25 MB): at 7,000 decisions a second, the last
#: 14 s of them. A retry of an older one is counted again, which errs toward refusing.
SEEN_CAP = 100_000


class MemoryLimiter:
    in_process = True

    def __init__(
        self, db_path: Path | None = None, flush_seconds: float = 1.0, clock: Clock = wall_clock
    ) -> None:
        self._clock = clock
        self._counts: dict[str, int] = {}
        self._expires: dict[str, float] = {}
        self._dirty: set[str] = set()
        self._reservations: dict[str, _Reservation] = {}
        #: reservations made or ended since the last flush
        self._dirty_reservations: set[str] = set()
        self._db_path = db_path
        self._flush_seconds = flush_seconds
        self._flusher = BackgroundTask(self._flush_loop)
        #: the newest flush: each takes its counters once the one before has written
        self._last_flush: asyncio.Future[None] | None = None
        self._last_sweep = clock()
        #: dedup key -> (until when, the first answer's fields) of decisions counted with an
        #: id, and the keys in the order they expire (one window for all). At thousands of
        #: decisions a second this holds hundreds of thousands: the answers are kept as
        #: tuples of plain values, which the garbage collector stops tracking, and expire a
        #: few at a time on each hit. As LimitResult objects, a full collection walked every
        #: one of them (250 ms at 400k): the gateway's p99 went from 2 to 35 ms.
        self._seen: dict[str, tuple[float, tuple[object, ...]]] = {}
        self._seen_order: deque[tuple[float, str]] = deque()
        if db_path is not None:
            self._load(db_path)

    def _connect(self) -> sqlite3.Connection:
        assert self._db_path is not None
        self._db_path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self._db_path, timeout=5)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(_SCHEMA)
        return conn

    def _load(self, db_path: Path) -> None:
        now = self._clock()
        with contextlib.closing(self._connect()) as conn:
            rows = conn.execute(
                "SELECT key, count, expires_at FROM quota_counters WHERE expires_at > ?", (now,)
            ).fetchall()
            held = conn.execute("SELECT id, tokens, keys, expires_at FROM token_reservations")
            reservations = held.fetchall()
        for key, count, expires_at in rows:
            self._counts[key] = count
            self._expires[key] = expires_at
        for rid, tokens, keys, expires_at in reservations:
            self._reservations[rid] = _Reservation(tokens, tuple(json.loads(keys)), expires_at)

    async def hit(
        self,
        buckets: list[str],
        limits: Limits,
        cost: int = 1,
        bucket_limits: Mapping[str, Limits] | None = None,
        request_id: str | None = None,
    ) -> LimitResult:
        now = self._clock()
        windows = windows_for(buckets, limits, now, bucket_limits)
        if not windows:
            return UNLIMITED
        if now - self._last_sweep > 60:
            self._sweep(now)
        # no await from here to the end: the dedup check, the count and its record are one
        # step, as the event loop runs nothing else meanwhile
        seen = dedup_key(buckets, request_id) if request_id else None
        if seen is not None:
            self._expire_seen(now)
            first = self._seen.get(seen)
            if first is not None and first[0] > now:
                metrics.LIMITER_DEDUPLICATED.inc()
                return LimitResult(*first[1])  # type: ignore[arg-type]
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
        result = summarize(windows, current, None)
        if seen is not None:
            until = now + DEDUP_SECONDS
            self._seen[seen] = (until, _fields(result))
            self._seen_order.append((until, seen))
        return result

    def _expire_seen(self, now: float) -> None:
        """Forget the decisions whose window has passed, and the oldest past
        :data:`SEEN_CAP`: the oldest first, so each hit does a little of it and none walks
        the whole record."""
        order, seen = self._seen_order, self._seen
        while order and (order[0][0] <= now or len(order) > SEEN_CAP):
            until, key = order.popleft()
            entry = seen.get(key)
            if entry is not None and entry[0] == until:  # not an id seen again since
                del seen[key]

    # ------------------------------------------------------------------ token quotas
    # No await between reading and writing a counter: the event loop is the lock, so a
    # reservation is checked and held atomically, as ``hit`` counts.

    async def check_tokens(
        self,
        buckets: list[str],
        limits: Limits,
        bucket_limits: Mapping[str, Limits] | None = None,
    ) -> LimitResult:
        now = self._clock()
        windows = token_windows(buckets, limits, now, bucket_limits)
        if not windows:
            return UNLIMITED
        self._expire_reservations(now)
        return check_counts(windows, [self._counts.get(w.key, 0) for w in windows])

    async def reserve_tokens(
        self,
        buckets: list[str],
        limits: Limits,
        tokens: int,
        ttl: float,
        bucket_limits: Mapping[str, Limits] | None = None,
    ) -> tuple[LimitResult, str | None]:
        now = self._clock()
        windows = token_windows(buckets, limits, now, bucket_limits)
        if not windows:
            return UNLIMITED, None
        self._expire_reservations(now)
        current = [self._counts.get(w.key, 0) for w in windows]
        for i, w in enumerate(windows):
            if current[i] + tokens > w.limit:
                return summarize(windows, current, i), None
        self._add(windows, tokens, now)
        rid = new_reservation_id()
        self._reservations[rid] = _Reservation(tokens, tuple(w.key for w in windows), now + ttl)
        self._dirty_reservations.add(rid)
        self._schedule_flush()
        return summarize(windows, [c + tokens for c in current], None), rid

    async def settle_tokens(
        self,
        buckets: list[str],
        limits: Limits,
        reservation: str | None,
        tokens: int,
        bucket_limits: Mapping[str, Limits] | None = None,
    ) -> None:
        now = self._clock()
        self._expire_reservations(now)
        held = self._reservations.pop(reservation, None) if reservation else None
        if held is not None:
            self._dirty_reservations.add(reservation or "")
            self._adjust(held.keys, tokens - held.tokens)
        elif tokens > 0:
            self._add(token_windows(buckets, limits, now, bucket_limits), tokens, now)
        self._schedule_flush()

    def _add(self, windows: list[Window], tokens: int, now: float) -> None:
        for w in windows:
            self._counts[w.key] = self._counts.get(w.key, 0) + tokens
            self._expires.setdefault(w.key, now + w.ttl)
            self._dirty.add(w.key)

    def _adjust(self, keys: tuple[str, ...], delta: int) -> None:
        """Move counters that still exist by ``delta`` (never below zero); a window that
        has ended meanwhile is left ended."""
        for key in keys:
            if key in self._counts:
                self._counts[key] = max(self._counts[key] + delta, 0)
                self._dirty.add(key)

    def _expire_reservations(self, now: float) -> None:
        """Hand back what reservations never settled still hold (a crashed caller)."""
        for rid in [r for r, held in self._reservations.items() if held.expires_at <= now]:
            held = self._reservations.pop(rid)
            self._dirty_reservations.add(rid)
            self._adjust(held.keys, -held.tokens)

    def _schedule_flush(self) -> None:
        if (self._dirty or self._dirty_reservations) and self._db_path is not None:
            self._flusher.start()

    def _sweep(self, now: float) -> None:
        self._last_sweep = now
        for key in [k for k, exp in self._expires.items() if exp <= now]:
            self._counts.pop(key, None)
            self._expires.pop(key, None)
        self._expire_seen(now)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self._flush_seconds)
            try:
                await self.flush()
            except (sqlite3.Error, OSError):
                log.exception("quota flush failed; will retry")

    async def flush(self) -> None:
        """Write changed quota counters to SQLite (off the event loop). Flushes run one
        after another and each to its end: one whose caller is cancelled (the flusher,
        stopped at shutdown) still writes the counters it took, before a later flush writes
        newer ones, and counters a failed write took are written by the next."""
        previous = self._last_flush
        self._last_flush = flushing = asyncio.ensure_future(self._flush_after(previous))
        await asyncio.shield(flushing)

    async def _flush_after(self, previous: asyncio.Future[None] | None) -> None:
        if previous is not None:
            with contextlib.suppress(sqlite3.Error, OSError):  # its caller saw the error
                await previous
        if not (self._dirty or self._dirty_reservations) or self._db_path is None:
            return
        dirty, dirty_reservations = self._dirty, self._dirty_reservations
        rows = [(k, self._counts.get(k, 0), self._expires.get(k, 0.0)) for k in dirty]
        held: list[tuple[str, int, str, float]] = []
        ended: list[tuple[str]] = []
        for rid in dirty_reservations:
            reservation = self._reservations.get(rid)
            if reservation is None:
                ended.append((rid,))
            else:
                keys = json.dumps(list(reservation.keys))
                held.append((rid, reservation.tokens, keys, reservation.expires_at))
        self._dirty, self._dirty_reservations = set(), set()
        try:
            await asyncio.to_thread(self._write, rows, held, ended)
        except BaseException:
            self._dirty |= dirty  # not written: the next flush writes them, as they are then
            self._dirty_reservations |= dirty_reservations
            raise

    def _write(
        self,
        rows: list[tuple[str, int, float]],
        held: list[tuple[str, int, str, float]],
        ended: list[tuple[str]],
    ) -> None:
        with contextlib.closing(self._connect()) as conn, conn:
            conn.executemany(
                "INSERT INTO quota_counters (key, count, expires_at) VALUES (?, ?, ?)"
                " ON CONFLICT(key) DO UPDATE SET count = excluded.count,"
                " expires_at = excluded.expires_at",
                rows,
            )
            conn.executemany(
                "INSERT OR REPLACE INTO token_reservations (id, tokens, keys, expires_at)"
                " VALUES (?, ?, ?, ?)",
                held,
            )
            conn.executemany("DELETE FROM token_reservations WHERE id = ?", ended)
            conn.execute("DELETE FROM quota_counters WHERE expires_at <= ?", (self._clock(),))

    async def aclose(self) -> None:
        await self._flusher.stop()
        await self.flush()


def _fields(result: LimitResult) -> tuple[object, ...]:
    """``result`` as a plain tuple (``LimitResult(*fields)``): a tuple subclass stays
    tracked by the garbage collector, a plain tuple of plain values does not."""
    return tuple(result)
