"""Usage counters per key, user and organization per UTC day, batched in memory.

Three counts: ``verifications`` (keys the sidecar verified: gateways cache answers, so
this is not traffic), ``requests`` (traffic the gateway plugins report through
``POST /v1/usage/report``) and ``denials`` (reported refusals). The hot paths only bump a
dict; ``flush`` writes the batch in one transaction (timer, and on close).

Inference traffic is also kept per model (``usage_models``): calls and the prompt and
completion tokens the upstream reported, per key, user and organization per day.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

from pydantic import BaseModel

from iam_sidecar.db.database import Database

_Slot = tuple[str, str, str, str]  # day, level, subject, organization
_ModelSlot = tuple[str, str, str, str, str]  # ... and model
COLUMNS = ("requests", "denials", "verifications")
MODEL_COLUMNS = ("requests", "prompt_tokens", "completion_tokens")


class UsageRow(BaseModel):
    day: str
    level: str
    subject: str
    organization: str
    requests: int
    denials: int
    verifications: int


class ModelUsageRow(BaseModel):
    day: str
    level: str
    subject: str
    organization: str
    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


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
        self._models: dict[_ModelSlot, list[int]] = {}

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

    def count_model(
        self,
        organization: str,
        subject: str | None,
        key_id: str | None,
        model: str,
        calls: int,
        prompt_tokens: int,
        completion_tokens: int,
    ) -> None:
        """Inference calls of ``model`` and the tokens they spent, at every level."""
        if calls <= 0 and prompt_tokens <= 0 and completion_tokens <= 0:
            return
        day = utc_day(self._clock())
        for level, name in _levels(organization, subject, key_id):
            totals = self._models.setdefault((day, level, name, organization, model), [0, 0, 0])
            totals[0] += calls
            totals[1] += prompt_tokens
            totals[2] += completion_tokens

    def pending(self) -> bool:
        return any(self._pending.values()) or bool(self._models)

    async def flush(self) -> None:
        pending, self._pending = self._pending, {c: Counter() for c in COLUMNS}
        models, self._models = self._models, {}
        slots = set().union(*(set(c) for c in pending.values()))
        if not slots and not models:
            return
        try:
            await self._write(pending, models, slots)
        except Exception:  # nothing written (the transaction rolled back): the next flush
            for column, counts in pending.items():
                self._pending[column].update(counts)
            for slot, totals in models.items():
                kept = self._models.setdefault(slot, [0, 0, 0])
                for i, value in enumerate(totals):
                    kept[i] += value
            raise

    async def _write(
        self,
        pending: dict[str, Counter[_Slot]],
        models: dict[_ModelSlot, list[int]],
        slots: set[_Slot],
    ) -> None:
        # Rows in key order: replicas flushing at once on PostgreSQL then take their row
        # locks in the same order and never deadlock. Columns are named with their table:
        # PostgreSQL reads a bare one in DO UPDATE as ambiguous.
        async with self._db.transaction() as conn:
            await conn.execute_many(
                "INSERT INTO usage_models (day, level, subject, organization, model, requests,"
                " prompt_tokens, completion_tokens) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (day, level, subject, model) DO UPDATE SET"
                " requests = usage_models.requests + excluded.requests,"
                " prompt_tokens = usage_models.prompt_tokens + excluded.prompt_tokens,"
                " completion_tokens = usage_models.completion_tokens"
                " + excluded.completion_tokens",
                [(*slot, *totals) for slot, totals in sorted(models.items())],
            )
            await conn.execute_many(
                "INSERT INTO usage_daily (day, level, subject, organization, requests, denials,"
                " verifications) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (day, level, subject)"
                " DO UPDATE SET requests = usage_daily.requests + excluded.requests,"
                " denials = usage_daily.denials + excluded.denials,"
                " verifications = usage_daily.verifications + excluded.verifications",
                [(*slot, *(pending[c].get(slot, 0) for c in COLUMNS)) for slot in sorted(slots)],
            )

    async def query(
        self, organization: str, day: str | None = None, level: str | None = None
    ) -> list[UsageRow]:
        rows = await self._select("usage_daily", organization, day, level)
        return [UsageRow(**row) for row in rows]

    async def query_models(
        self, organization: str, day: str | None = None, level: str | None = None
    ) -> list[ModelUsageRow]:
        """Calls and tokens per model of ``organization``'s keys, users and itself."""
        rows = await self._select("usage_models", organization, day, level, ", model")
        return [ModelUsageRow(**row) for row in rows]

    async def _select(
        self, table: str, organization: str, day: str | None, level: str | None, order: str = ""
    ) -> list[dict[str, object]]:
        """``organization``'s rows of one usage table, optionally of one day and level."""
        sql = f"SELECT * FROM {table} WHERE organization = ?"  # noqa: S608 (our table names)
        params: list[str] = [organization]
        if day:
            sql += " AND day = ?"
            params.append(day)
        if level:
            sql += " AND level = ?"
            params.append(level)
        sql += f" ORDER BY day, level, subject{order}"
        return await self._db.fetch_all(sql, params)
