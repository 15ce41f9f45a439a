"""Versioned schema migrations: an ordered list, applied once each, recorded in a table."""

from __future__ import annotations

import aiosqlite

#: Append only: entry ``i`` is schema version ``i + 1``. Never edit a released entry.
MIGRATIONS: list[tuple[str, ...]] = [
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


async def schema_version(db: aiosqlite.Connection) -> int:
    await db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    async with db.execute("SELECT MAX(version) FROM schema_version") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row and row[0] is not None else 0


async def migrate(db: aiosqlite.Connection) -> int:
    """Bring ``db`` (in autocommit mode) to the newest version, one transaction per step."""
    current = await schema_version(db)
    for version in range(current + 1, len(MIGRATIONS) + 1):
        await db.execute("BEGIN IMMEDIATE")
        try:
            # Re-check under the write lock: another process may have migrated meanwhile.
            async with db.execute("SELECT MAX(version) FROM schema_version") as cur:
                row = await cur.fetchone()
            if row and row[0] is not None and int(row[0]) >= version:
                await db.execute("ROLLBACK")
                continue
            for statement in MIGRATIONS[version - 1]:
                await db.execute(statement)
            await db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise
    return len(MIGRATIONS)
