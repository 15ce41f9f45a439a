"""The sidecar's SQLite database: one aiosqlite connection in WAL mode, migrated on open.

The embedded default: one process per file. Writes go through one lock and ``BEGIN
IMMEDIATE``, so multi-statement writes never interleave (nor do another process's).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from iam_sidecar.db.database import Connection, Params, Row
from iam_sidecar.db.migrations import migrate_sqlite
from iam_sidecar.errors import UniqueViolation


def _dict_row(cursor: sqlite3.Cursor, values: tuple[Any, ...]) -> Row:
    return {column[0]: value for column, value in zip(cursor.description, values, strict=True)}


class SqliteConnection:
    """:class:`~iam_sidecar.db.database.Connection` over one aiosqlite connection."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn

    async def execute(self, sql: str, params: Params = ()) -> None:
        try:
            await self.conn.execute(sql, params)
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" in str(exc):
                raise UniqueViolation(str(exc)) from None
            raise

    async def execute_many(self, sql: str, rows: Iterable[Params]) -> None:
        await self.conn.executemany(sql, rows)

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        # one thread hop (execute_fetchall), not three (execute, fetchone, close)
        return list(await self.conn.execute_fetchall(sql, params))  # type: ignore[arg-type]

    async def fetch_one(self, sql: str, params: Params = ()) -> Row | None:
        return next(iter(await self.fetch_all(sql, params)), None)


class SqliteDatabase(SqliteConnection):
    """Owns the connection and a write lock, so multi-statement writes never interleave."""

    engine = "sqlite"

    def __init__(self, conn: aiosqlite.Connection) -> None:
        super().__init__(conn)
        self.write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> SqliteDatabase:
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: autocommit; transactions are explicit (``transaction()``).
        conn = await aiosqlite.connect(path, isolation_level=None)
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        await conn.execute("PRAGMA busy_timeout=5000")
        await conn.execute("PRAGMA foreign_keys=ON")
        await migrate_sqlite(conn)
        conn.row_factory = _dict_row  # type: ignore[assignment]
        return cls(conn)

    @asynccontextmanager
    async def transaction(self, lock: str | None = None) -> AsyncIterator[Connection]:
        """``lock`` is not needed here: ``BEGIN IMMEDIATE`` admits one writer at a time.
        Whatever stops the transaction (the body, a failed COMMIT, a cancel that lands on
        BEGIN, which still runs on the database's thread) ends it with a ROLLBACK: the
        connection is never left inside a transaction for the next writer."""
        async with self.write_lock:
            try:
                await self.conn.execute("BEGIN IMMEDIATE")
                yield self
                await self.conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):  # none open: a BEGIN that failed
                    await self.conn.execute("ROLLBACK")
                raise

    async def ping(self) -> None:
        await self.fetch_one("SELECT 1 AS ok")

    async def journal_mode(self) -> str:
        row = await self.fetch_one("PRAGMA journal_mode")
        return str(next(iter(row.values()))) if row else ""

    async def close(self) -> None:
        await self.conn.close()
