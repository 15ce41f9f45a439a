"""The sidecar's PostgreSQL database: a psycopg 3 async pool, shared by sidecar replicas.

Every replica serves from the same tables, so a key minted on one verifies on the others at
once, and a revocation is seen by all of them on their next lookup (the sidecar keeps no
verify cache; gateways do, for ``verify_cache_ttl_seconds``). Writes that must count
before they insert (the per-owner key cap, a parent key's lineage) take a transaction-scoped
advisory lock named by the caller, so two replicas cannot both pass the same check.

The DSN carries a password: it is never logged, and ``repr`` leaves it out.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from iam_sidecar.db.database import Connection, Params, Row
from iam_sidecar.db.migrations import migrate_postgres
from iam_sidecar.errors import UniqueViolation


@functools.lru_cache(maxsize=256)
def _dialect(sql: str) -> str:
    """The store's ``?`` placeholders as psycopg's ``%s`` (a literal ``%`` doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


class PostgresConnection:
    """:class:`~iam_sidecar.db.database.Connection` over one psycopg connection."""

    def __init__(self, conn: psycopg.AsyncConnection[Row]) -> None:
        self.conn = conn

    async def execute(self, sql: str, params: Params = ()) -> None:
        try:
            await self.conn.execute(_dialect(sql), params)
        except psycopg.errors.UniqueViolation as exc:
            raise UniqueViolation(exc.diag.message_primary or "unique violation") from None

    async def execute_many(self, sql: str, rows: Iterable[Params]) -> None:
        async with self.conn.cursor() as cur:
            await cur.executemany(_dialect(sql), list(rows))

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        cur = await self.conn.execute(_dialect(sql), params)
        return await cur.fetchall()

    async def fetch_one(self, sql: str, params: Params = ()) -> Row | None:
        cur = await self.conn.execute(_dialect(sql), params)
        return await cur.fetchone()


class PostgresDatabase:
    """A pool of autocommit connections; reads borrow one, transactions hold one."""

    engine = "postgres"

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    def __repr__(self) -> str:  # never the DSN: it carries the password
        return "PostgresDatabase()"

    @classmethod
    async def open(
        cls, dsn: str, *, migrate_dsn: str | None = None, max_size: int = 10
    ) -> PostgresDatabase:
        """Migrate (as ``migrate_dsn``'s role when given, granting ``dsn``'s role DML), then
        open the serving pool."""
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            cur = await conn.execute("SELECT current_user")
            serving_role = str((await cur.fetchone() or ("",))[0])
            if migrate_dsn is None:
                await migrate_postgres(conn, None)
        if migrate_dsn is not None:
            async with await psycopg.AsyncConnection.connect(migrate_dsn, autocommit=True) as owner:
                await migrate_postgres(owner, serving_role)
        pool: AsyncConnectionPool = AsyncConnectionPool(
            dsn,
            min_size=1,
            max_size=max_size,
            open=False,
            kwargs={"autocommit": True, "row_factory": dict_row},
        )
        await pool.open(wait=True, timeout=15)
        return cls(pool)

    async def execute(self, sql: str, params: Params = ()) -> None:
        async with self.pool.connection() as conn:
            await PostgresConnection(conn).execute(sql, params)

    async def execute_many(self, sql: str, rows: Iterable[Params]) -> None:
        async with self.transaction() as conn:
            await conn.execute_many(sql, rows)

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        async with self.pool.connection() as conn:
            return await PostgresConnection(conn).fetch_all(sql, params)

    async def fetch_one(self, sql: str, params: Params = ()) -> Row | None:
        async with self.pool.connection() as conn:
            return await PostgresConnection(conn).fetch_one(sql, params)

    @asynccontextmanager
    async def transaction(self, lock: str | None = None) -> AsyncIterator[Connection]:
        async with self.pool.connection() as conn, conn.transaction():
            if lock is not None:
                # held until commit or rollback: writers naming ``lock`` go one at a time,
                # on every replica
                await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (lock,))
            yield PostgresConnection(conn)

    async def ping(self) -> None:
        await self.fetch_one("SELECT 1 AS ok")

    async def close(self) -> None:
        await self.pool.close()
