"""Versioned schema migrations, one ordered list per engine, applied once each.

Version ``n`` means the same tables and columns on both engines; only the dialect differs
(types, identity columns, how the audit log refuses UPDATE and DELETE). Each step runs in
one transaction and is recorded in ``schema_version``; replicas starting together migrate
once (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: an advisory lock).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import aiosqlite

if TYPE_CHECKING:
    import psycopg

#: Append only: entry ``i`` is schema version ``i + 1``. Never edit a released entry.
SQLITE: list[tuple[str, ...]] = [
    # 1: keys, owner grants, audit log (append-only via triggers), daily usage counters
    (
        """CREATE TABLE api_keys (
            key_id TEXT PRIMARY KEY,
            organization TEXT NOT NULL,
            owner TEXT NOT NULL,
            owner_kind TEXT NOT NULL,
            name TEXT NOT NULL,
            scopes TEXT NOT NULL,
            limits TEXT,
            digest TEXT NOT NULL UNIQUE,
            prev_digest TEXT UNIQUE,
            grace_until REAL,
            created_at REAL NOT NULL,
            expires_at REAL,
            revoked_at REAL,
            last_used_at REAL,
            rotated_at REAL,
            UNIQUE (organization, owner, name)
        )""",
        "CREATE INDEX api_keys_org ON api_keys (organization)",
        "CREATE INDEX api_keys_owner ON api_keys (owner)",
        """CREATE TABLE owner_grants (
            owner TEXT PRIMARY KEY,
            active INTEGER NOT NULL,
            roles TEXT NOT NULL,
            scopes TEXT NOT NULL,
            is_org_admin INTEGER NOT NULL,
            refreshed_at REAL NOT NULL
        )""",
        """CREATE TABLE audit_log (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            ts REAL NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            organization TEXT,
            target TEXT,
            source TEXT,
            outcome TEXT NOT NULL,
            details TEXT
        )""",
        "CREATE INDEX audit_log_org_ts ON audit_log (organization, ts)",
        """CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
            BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END""",
        """CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
            BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END""",
        """CREATE TABLE usage_daily (
            day TEXT NOT NULL,
            level TEXT NOT NULL,
            subject TEXT NOT NULL,
            organization TEXT NOT NULL,
            requests INTEGER NOT NULL DEFAULT 0,
            denials INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (day, level, subject)
        )""",
    ),
    # 2: verifications counted apart from traffic the gateway plugins report
    ("ALTER TABLE usage_daily ADD COLUMN verifications INTEGER NOT NULL DEFAULT 0",),
    # 3: inference calls and tokens per model (reported by the gateway plugin)
    (
        """CREATE TABLE usage_models (
            day TEXT NOT NULL,
            level TEXT NOT NULL,
            subject TEXT NOT NULL,
            organization TEXT NOT NULL,
            model TEXT NOT NULL,
            requests INTEGER NOT NULL DEFAULT 0,
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (day, level, subject, model)
        )""",
        "CREATE INDEX usage_models_org ON usage_models (organization, day)",
    ),
    # 4: key lineage: the key that minted a key (it dies with its parent)
    (
        "ALTER TABLE api_keys ADD COLUMN parent_key_id TEXT REFERENCES api_keys (key_id)",
        "CREATE INDEX api_keys_parent ON api_keys (parent_key_id)",
    ),
]

#: Append only, in step with :data:`SQLITE` (a test checks the two agree column by column).
POSTGRES: list[tuple[str, ...]] = [
    (
        """CREATE TABLE api_keys (
            key_id TEXT PRIMARY KEY,
            organization TEXT NOT NULL,
            owner TEXT NOT NULL,
            owner_kind TEXT NOT NULL,
            name TEXT NOT NULL,
            scopes TEXT NOT NULL,
            limits TEXT,
            digest TEXT NOT NULL UNIQUE,
            prev_digest TEXT UNIQUE,
            grace_until DOUBLE PRECISION,
            created_at DOUBLE PRECISION NOT NULL,
            expires_at DOUBLE PRECISION,
            revoked_at DOUBLE PRECISION,
            last_used_at DOUBLE PRECISION,
            rotated_at DOUBLE PRECISION,
            UNIQUE (organization, owner, name)
        )""",
        "CREATE INDEX api_keys_org ON api_keys (organization)",
        "CREATE INDEX api_keys_owner ON api_keys (owner)",
        """CREATE TABLE owner_grants (
            owner TEXT PRIMARY KEY,
            active INTEGER NOT NULL,
            roles TEXT NOT NULL,
            scopes TEXT NOT NULL,
            is_org_admin INTEGER NOT NULL,
            refreshed_at DOUBLE PRECISION NOT NULL
        )""",
        """CREATE TABLE audit_log (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            ts DOUBLE PRECISION NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            organization TEXT,
            target TEXT,
            source TEXT,
            outcome TEXT NOT NULL,
            details TEXT
        )""",
        "CREATE INDEX audit_log_org_ts ON audit_log (organization, ts)",
        # the serving role is also granted only SELECT and INSERT here (see grants());
        # the trigger holds for the schema's owner too
        """CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$""",
        """CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
            FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()""",
        """CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
            FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()""",
        """CREATE TABLE usage_daily (
            day TEXT NOT NULL,
            level TEXT NOT NULL,
            subject TEXT NOT NULL,
            organization TEXT NOT NULL,
            requests BIGINT NOT NULL DEFAULT 0,
            denials BIGINT NOT NULL DEFAULT 0,
            PRIMARY KEY (day, level, subject)
        )""",
    ),
    ("ALTER TABLE usage_daily ADD COLUMN verifications BIGINT NOT NULL DEFAULT 0",),
    (
        """CREATE TABLE usage_models (
            day TEXT NOT NULL,
            level TEXT NOT NULL,
            subject TEXT NOT NULL,
            organization TEXT NOT NULL,
            model TEXT NOT NULL,
            requests BIGINT NOT NULL DEFAULT 0,
            prompt_tokens BIGINT NOT NULL DEFAULT 0,
            completion_tokens BIGINT NOT NULL DEFAULT 0,
            PRIMARY KEY (day, level, subject, model)
        )""",
        "CREATE INDEX usage_models_org ON usage_models (organization, day)",
    ),
    (
        "ALTER TABLE api_keys ADD COLUMN parent_key_id TEXT REFERENCES api_keys (key_id)",
        "CREATE INDEX api_keys_parent ON api_keys (parent_key_id)",
    ),
]

#: what the serving role may do once migrations ran as the owner: no DDL, and the audit
#: log only read and appended to
POSTGRES_GRANTS = (
    "GRANT USAGE ON SCHEMA public TO {role}",
    "GRANT SELECT ON schema_version TO {role}",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON api_keys, owner_grants, usage_daily, usage_models"
    " TO {role}",
    "GRANT SELECT, INSERT ON audit_log TO {role}",
)
#: ``pg_advisory_xact_lock`` key serializing replicas that migrate at once ("hanzosid")
POSTGRES_MIGRATE_LOCK = 0x68616E7A6F736964


async def schema_version(db: aiosqlite.Connection) -> int:
    await db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    async with db.execute("SELECT MAX(version) FROM schema_version") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row and row[0] is not None else 0


async def migrate_sqlite(db: aiosqlite.Connection) -> int:
    """Bring ``db`` (in autocommit mode) to the newest version, one transaction per step."""
    current = await schema_version(db)
    for version in range(current + 1, len(SQLITE) + 1):
        await db.execute("BEGIN IMMEDIATE")
        try:
            # Re-check under the write lock: another process may have migrated meanwhile.
            async with db.execute("SELECT MAX(version) FROM schema_version") as cur:
                row = await cur.fetchone()
            if row and row[0] is not None and int(row[0]) >= version:
                await db.execute("ROLLBACK")
                continue
            for statement in SQLITE[version - 1]:
                await db.execute(statement)
            await db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise
    return len(SQLITE)


async def migrate_postgres(conn: psycopg.AsyncConnection, serving_role: str | None) -> int:
    """Bring the database ``conn`` (autocommit, a role that may change the schema) to the
    newest version, one transaction per step under an advisory lock; then grant
    ``serving_role`` (when it is another role) what the store needs, and no more."""
    from psycopg import sql

    for version in range(1, len(POSTGRES) + 1):
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (POSTGRES_MIGRATE_LOCK,))
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
            )
            cur = await conn.execute("SELECT MAX(version) FROM schema_version")
            row = await cur.fetchone()
            if row is not None and row[0] is not None and int(row[0]) >= version:
                continue
            for statement in POSTGRES[version - 1]:
                await conn.execute(statement)
            await conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
    if serving_role is not None:
        role = sql.Identifier(serving_role)
        for grant in POSTGRES_GRANTS:
            await conn.execute(sql.SQL(grant).format(role=role))
    return len(POSTGRES)
