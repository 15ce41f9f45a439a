"""Usage counters per key, user and organization per UTC day, batched in memory.

Verification is the hot path; it only bumps a dict. ``flush`` writes the batch in one
transaction (the key store calls it on a timer and on close).
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime

from pydantic import BaseModel

from iam_sidecar.db import Database


class UsageRow(BaseModel):
    day: str
    level: str
    subject: str
    organization: str
    requests: int
    denials: int


def utc_day(ts: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if ts is None else ts, UTC).strftime("%Y-%m-%d")


class UsageCounters:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._requests: Counter[tuple[str, str, str, str]] = Counter()
        self._denials: Counter[tuple[str, str, str, str]] = Counter()

    def _levels(
        self, organization: str, subject: str | None, key_id: str | None
    ) -> list[tuple[str, str]]:
        levels = [("org", organization)]
        if subject:
            levels.append(("user", subject))
        if key_id:
            levels.append(("key", key_id))
        return levels

    def count_request(self, organization: str, subject: str | None, key_id: str | None) -> None:
        day = utc_day()
        for level, name in self._levels(organization, subject, key_id):
            self._requests[(day, level, name, organization)] += 1

    def count_denial(self, organization: str, subject: str | None, key_id: str | None) -> None:
        day = utc_day()
        for level, name in self._levels(organization, subject, key_id):
            self._denials[(day, level, name, organization)] += 1

    def pending(self) -> bool:
        return bool(self._requests or self._denials)

    async def flush(self) -> None:
        requests, denials = self._requests, self._denials
        self._requests, self._denials = Counter(), Counter()
        if not requests and not denials:
            return
        rows = {k: (requests.get(k, 0), denials.get(k, 0)) for k in set(requests) | set(denials)}
        async with self._db.transaction() as conn:
            await conn.executemany(
                "INSERT INTO usage_daily (day, level, subject, organization, requests, denials)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (day, level, subject) DO UPDATE SET"
                " requests = requests + excluded.requests, denials = denials + excluded.denials",
                [(*k, r, d) for k, (r, d) in rows.items()],
            )

    async def query(
        self, organization: str, day: str | None = None, level: str | None = None
    ) -> list[UsageRow]:
        sql = "SELECT * FROM usage_daily WHERE organization = ?"
        params: list[str] = [organization]
        if day:
            sql += " AND day = ?"
            params.append(day)
        if level:
            sql += " AND level = ?"
            params.append(level)
        async with self._db.conn.execute(sql + " ORDER BY day, level, subject", params) as cur:
            rows = await cur.fetchall()
        return [UsageRow(**dict(row)) for row in rows]
