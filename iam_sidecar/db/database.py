"""What the key store, audit log and usage counters ask of a database, whichever engine.

Two engines serve it: SQLite (one file, the embedded default) and PostgreSQL (one server
that several sidecar replicas share). Both take the same SQL text, written with ``?``
placeholders in the dialect the two share; rows come back as dicts keyed by column name.
Which engine runs is a setting: a ``postgresql://`` DSN, or a path for SQLite.

A transaction may name a ``lock``: on PostgreSQL, writers naming the same lock run one at
a time across every replica (an advisory lock held to commit), which is what makes "count
then insert" exact there; SQLite's ``BEGIN IMMEDIATE`` already serializes every writer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Protocol

#: one result row, by column name
Row = dict[str, Any]
Params = Sequence[Any]

_POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class Connection(Protocol):
    """One connection, inside a transaction or not: SQL with ``?`` placeholders."""

    async def execute(self, sql: str, params: Params = ()) -> None: ...

    async def execute_many(self, sql: str, rows: Iterable[Params]) -> None: ...

    async def fetch_one(self, sql: str, params: Params = ()) -> Row | None: ...

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]: ...


class Database(Connection, Protocol):
    """A connection (reads outside any transaction) that also opens transactions."""

    #: ``"sqlite"`` or ``"postgres"``
    engine: str

    def transaction(self, lock: str | None = None) -> AbstractAsyncContextManager[Connection]:
        """Commit when the block ends, roll back if it raises; ``lock`` as the module says."""
        ...

    async def ping(self) -> None:
        """Raise unless the database answers (readiness)."""
        ...

    async def close(self) -> None: ...


def is_postgres_url(target: str | Path) -> bool:
    return isinstance(target, str) and target.startswith(_POSTGRES_SCHEMES)


async def open_database(target: str | Path, *, migrate_dsn: str | None = None) -> Database:
    """The database at ``target`` (a ``postgresql://`` DSN, or a SQLite file), migrated.

    ``migrate_dsn`` (PostgreSQL only) names a role that may change the schema: migrations
    run as it and grant the serving role (``target``) only what the store needs.
    """
    if is_postgres_url(target):
        from iam_sidecar.db.postgres import PostgresDatabase  # psycopg: the postgres extra

        return await PostgresDatabase.open(str(target), migrate_dsn=migrate_dsn)
    if migrate_dsn is not None:
        raise ValueError("a migrate DSN is for PostgreSQL; SQLite migrates its own file")
    from iam_sidecar.db.sqlite import SqliteDatabase

    return await SqliteDatabase.open(Path(target))
