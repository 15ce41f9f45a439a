"""Append-only audit log: who did what, when, from where, with which outcome.

The table refuses UPDATE and DELETE (triggers). Callers pass identifiers only; ``details``
is scrubbed of anything that looks like a key or a secret before it is written.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from pydantic import BaseModel

from iam_sidecar.db.database import Connection, Database

_SECRETISH = re.compile(r"hk-[A-Za-z0-9]{12}_[A-Za-z0-9_-]+")
_SECRET_FIELDS = {"secret", "client_secret", "password", "key", "plaintext", "token"}


class AuditEvent(BaseModel):
    id: int
    ts: float
    actor: str
    action: str
    organization: str | None = None
    target: str | None = None
    source: str | None = None
    outcome: str
    details: dict[str, Any] | None = None


def scrub(value: Any) -> Any:
    """Drop secret-named fields and mask anything shaped like an API key."""
    if isinstance(value, dict):
        return {
            k: ("[redacted]" if k.lower() in _SECRET_FIELDS else scrub(v)) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    if isinstance(value, str):
        return _SECRETISH.sub(lambda m: m.group(0)[:15] + "_[redacted]", value)
    return value


async def append(
    conn: Connection,
    *,
    actor: str,
    action: str,
    outcome: str,
    organization: str | None = None,
    target: str | None = None,
    source: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Insert one event on ``conn`` (inside the caller's transaction, if any)."""
    await conn.execute(
        "INSERT INTO audit_log (ts, actor, action, organization, target, source, outcome, details)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            time.time(),
            scrub(actor),
            scrub(action),
            scrub(organization),
            scrub(target),
            scrub(source),
            scrub(outcome),
            json.dumps(scrub(details), sort_keys=True) if details else None,
        ),
    )


class AuditLog:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(self, **fields: Any) -> None:
        async with self._db.transaction() as conn:
            await append(conn, **fields)

    async def query(
        self,
        *,
        organization: str | None = None,
        action: str | None = None,
        actor: str | None = None,
        outcome: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[AuditEvent]:
        """Newest first, filtered by the fields given."""
        clauses, params = [], []
        for column, value in (
            ("organization", organization),
            ("action", action),
            ("actor", actor),
            ("outcome", outcome),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            clauses.append("ts >= ?")
            params.append(since)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT * FROM audit_log {where} ORDER BY id DESC LIMIT ?"  # noqa: S608
        params.append(max(1, min(limit, 10_000)))
        rows = await self._db.fetch_all(sql, params)
        return [
            AuditEvent(
                **{k: v for k, v in row.items() if k != "details"},
                details=json.loads(row["details"]) if row["details"] else None,
            )
            for row in rows
        ]
