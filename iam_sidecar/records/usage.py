"""Usage counters per key, user and organization per UTC day, batched in memory.

Three counts: ``verifications`` (keys the sidecar verified: gateways cache answers, so
this is not traffic), ``requests`` (traffic the gateway plugins report through
``POST /v1/usage/report``) and ``denials`` (reported refusals). The hot paths only bump a
dict; ``flush`` writes the batch in one transaction (timer, and on close).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

from pydantic import BaseModel

from iam_sidecar.db.database import Database

_Slot = tuple[str, str, str, str]  # day, level, subject, organization
COLUMNS = ("requests", "denials", "verifications")


class UsageRow(BaseModel):
    day: str
    level: str
    subject: str
    organization: str
    requests: int
    denials: int
    verifications: int


def utc_day(ts: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if ts is None else ts, UTC).strftime("%Y-%m-%d")


def _levels(organization: str, subject: str | None, key_id: str | None) -> list[tuple[str, str]]:
    levels = [("org", organization)]
    if subject:
        levels.append(("user", subject))
    if key_id:
        levels.append(("key", key_id))
    return levels


class UsageCounters:
    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock
        self._pending: dict[str, Counter[_Slot]] = {c: Counter() for c in COLUMNS}

    def _bump(
        self, column: str, organization: str, subject: str | None, key_id: str | None, n: int
    ) -> None:
        if n <= 0:
            return
        day = utc_day(self._clock())
        for level, name in _levels(organization, subject, key_id):
            self._pending[column][(day, level, name, organization)] += n

    def count_verification(
        self, organization: str, subject: str | None, key_id: str | None
    ) -> None:
        self._bump("verifications", organization, subject, key_id, 1)

    def count_requests(
        self, organization: str, subject: str | None, key_id: str | None, n: int = 1
    ) -> None:
        self._bump("requests", organization, subject, key_id, n)

    def count_denial(
        self, organization: str, subject: str | None, key_id: str | None, n: int = 1
    ) -> None:
        self._bump("denials", organization, subject, key_id, n)

    def pending(self) -> bool:
        return any(self._pending.values())

    async def flush(self) -> None:
        pending, self._pending = self._pending, {c: Counter() for c in COLUMNS}
        slots = set().union(*(set(c) for c in pending.values()))
        if not slots:
            return
        async with self._db.transaction() as conn:
            await conn.executemany(
                "INSERT INTO usage_daily (day, level, subject, organization, requests, denials,"
                " verifications) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (day, level, subject)"
                " DO UPDATE SET requests = requests + excluded.requests,"
                " denials = denials + excluded.denials,"
                " verifications = verifications + excluded.verifications",
                [(*slot, *(pending[c].get(slot, 0) for c in COLUMNS)) for slot in slots],
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
