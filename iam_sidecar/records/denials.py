"""Anonymous denials, aggregated: one audit row per (source, status, reason, minute).

Anyone can send requests without a credential, or with a made-up one, so writing one audit
row per refusal lets an anonymous client grow the append-only audit log without bound.
Refusals of an authenticated caller (a known subject) stay one row each: they say who
tried what. Anonymous ones are counted in memory per bucket and written when their minute
is over, as one row carrying the count. Memory is bounded too: past ``max_buckets`` open
buckets, further sources fold into one ``*`` bucket per status and reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from iam_sidecar.db.database import Database
from iam_sidecar.records import audit

ANONYMOUS_DENIED = "request.denied.anonymous"
OVERFLOW_SOURCE = "*"
WINDOW_SECONDS = 60


@dataclass(frozen=True)
class DenialBucket:
    """What one aggregated row says: this many refusals of this kind from there, that minute."""

    minute_start: float
    source: str
    status: int
    reason: str


class DenialAggregator:
    """Counts anonymous denials per bucket; hands out the buckets whose minute is over."""

    def __init__(self, clock: Callable[[], float], max_buckets: int = 10_000) -> None:
        self._clock = clock
        self._max_buckets = max_buckets
        self._counts: dict[DenialBucket, int] = {}

    def _minute(self, now: float) -> float:
        return float(int(now // WINDOW_SECONDS) * WINDOW_SECONDS)

    def add(self, source: str | None, status: int, reason: str) -> None:
        bucket = DenialBucket(self._minute(self._clock()), source or "unknown", status, reason)
        if bucket not in self._counts and len(self._counts) >= self._max_buckets:
            bucket = DenialBucket(bucket.minute_start, OVERFLOW_SOURCE, status, reason)
        self._counts[bucket] = self._counts.get(bucket, 0) + 1

    def closed(self) -> list[tuple[DenialBucket, int]]:
        """Remove and return the buckets of minutes that are over (by the clock)."""
        current = self._minute(self._clock())
        done = [bucket for bucket in self._counts if bucket.minute_start < current]
        return [(bucket, self._counts.pop(bucket)) for bucket in done]

    def drain(self) -> list[tuple[DenialBucket, int]]:
        """Every bucket, closed or not: at shutdown, so no count is lost."""
        drained = list(self._counts.items())
        self._counts.clear()
        return drained

    def __len__(self) -> int:
        return len(self._counts)


async def write_buckets(db: Database, buckets: list[tuple[DenialBucket, int]]) -> None:
    """One ``request.denied.anonymous`` audit row per bucket, in one transaction."""
    if not buckets:
        return
    async with db.transaction() as conn:
        for bucket, count in buckets:
            await audit.append(
                conn,
                actor="anonymous",
                action=ANONYMOUS_DENIED,
                outcome=f"{bucket.status}:{bucket.reason}",
                source=bucket.source,
                details={"count": count, "minute_start": bucket.minute_start},
            )
