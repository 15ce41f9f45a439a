"""PostgreSQL backend: pgvector HNSW for vectors, full-text search for keywords, and
row-level security keyed by the tenant.

Every call runs in one transaction that first sets ``hanzo.tenant`` for that transaction
only (``set_config(..., true)``). The table's policy admits only rows of that tenant, and the
application connects as a role that owns nothing and cannot bypass row-level security, so a
query that forgot its ``WHERE tenant = ...`` still cannot read or change another tenant's
rows. The explicit tenant conditions stay in every query: they are what the indexes use.

Schema changes are versioned migrations run at start over a separate owner connection
(``migrate_dsn``); the application role is only granted DML on the table.

Vector search: a tenant smaller than :data:`EXACT_MAX_ROWS` is scanned exactly (its rows
through the tenant index, cosine in SQL); a larger one walks the HNSW index with pgvector's
iterative scan, so filters that reject most candidates still fill ``k`` (falling back to
an exact scan if they cannot). Each read is one round trip (:meth:`PostgresBackend._fetch`).

The table is LIST-partitioned by tenant (migration 2). Every tenant starts in the shared
default partition; a large one gets a partition of its own, and so an HNSW graph of its
own, from the operator (:func:`bulk_load`, ``memory-service own-partition``): its searches
then walk 100k nodes of its own rather than filter a graph of every tenant's rows. The
policy is on the parent; the application role may not read any partition directly.
"""

from __future__ import annotations

# SQL text here is assembled only from constants and placeholders; values are bound.
# ruff: noqa: S608
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector_async
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from memory_service.backends.base import MemoryBackend, Query, Record, Usage, keyword_terms
from memory_service.bounds import readable_metadata
from memory_service.settings import MemorySettings

log = logging.getLogger(__name__)

#: Tenants up to this many rows are searched exactly (a few ms); larger ones use HNSW.
EXACT_MAX_ROWS = 2_000
#: HNSW candidates kept per search (``hnsw.ef_search``); ``postgres_ef_search`` sets it.
EF_SEARCH = 200
_SIZE_TTL_S = 30.0
_LOCK_KEY = 0x68616E7A6F6D656D  # "hanzomem": serialises concurrent migrations

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
CREATE TABLE hanzo_memory_settings (key text PRIMARY KEY, value text NOT NULL);
INSERT INTO hanzo_memory_settings VALUES ('embedding_dim', '{dim}');

-- Porter-style stemming with no stop words, as SQLite's FTS5 'porter unicode61' does.
CREATE TEXT SEARCH DICTIONARY hanzo_english_stem (TEMPLATE = snowball, Language = english);
CREATE TEXT SEARCH CONFIGURATION hanzo_english (COPY = english);
ALTER TEXT SEARCH CONFIGURATION hanzo_english
    ALTER MAPPING FOR asciiword, asciihword, hword_asciipart, word, hword, hword_part
    WITH hanzo_english_stem;

CREATE TABLE memories (
    tenant text NOT NULL,
    id text COLLATE "C" NOT NULL,
    user_name text NOT NULL,
    namespace text NOT NULL,
    content text NOT NULL,
    content_hash text NOT NULL,
    metadata json NOT NULL,
    meta_kv text[] NOT NULL,
    tags text[] NOT NULL,
    importance double precision NOT NULL,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL,
    expires_at bigint NOT NULL,
    size integer NOT NULL,
    embedding vector({dim}) NOT NULL,
    -- The content's words, plus one token naming the tenant (as SQLite's tenant_tok): a
    -- keyword query ANDs it in, so the GIN index returns only the tenant's postings.
    tsv tsvector GENERATED ALWAYS AS (
        to_tsvector('hanzo_english', content)
        || setweight(to_tsvector('simple', 'tenant' || md5(tenant)), 'D')
    ) STORED,
    PRIMARY KEY (tenant, id)
);
-- Keep vectors in the row (not TOASTed out of line): an exact scan reads no second table.
ALTER TABLE memories ALTER COLUMN embedding SET STORAGE MAIN;
-- Fresh statistics soon after bulk loads: the planner picks the full-text index by them.
ALTER TABLE memories SET (autovacuum_analyze_scale_factor = 0.02,
                          autovacuum_vacuum_scale_factor = 0.05);
CREATE INDEX memories_order ON memories (tenant, created_at, id);
CREATE INDEX memories_hash ON memories (tenant, content_hash);
CREATE INDEX memories_expiry ON memories (tenant, expires_at);
CREATE INDEX memories_tsv ON memories USING gin (tsv) WITH (fastupdate = off);
CREATE INDEX memories_embedding ON memories
    USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64);

ALTER TABLE memories ENABLE ROW LEVEL SECURITY;
ALTER TABLE memories FORCE ROW LEVEL SECURITY;
-- "tenant || ''" keeps the policy a filter the planner never serves from a tenant index
-- (the queries' own tenant conditions are what the indexes use), so it cannot steer a
-- keyword query away from the full-text index.
CREATE POLICY memories_tenant ON memories
    USING (tenant || '' = current_setting('hanzo.tenant', true))
    WITH CHECK (tenant = current_setting('hanzo.tenant', true));
""",
    ),
    (
        2,
        """
-- LIST-partitioned by tenant, so a large tenant can get a partition of its own, and with
-- it an HNSW graph of its own (see own_partition): a search then walks a graph of that
-- tenant's rows instead of filtering a graph of everyone's. The table of migration 1
-- becomes the DEFAULT partition, where every tenant starts: no row is copied and its
-- indexes are attached to the new parent's as they are.
ALTER TABLE memories RENAME TO memories_shared;
ALTER INDEX memories_pkey RENAME TO memories_shared_pkey;
ALTER INDEX memories_order RENAME TO memories_shared_order;
ALTER INDEX memories_hash RENAME TO memories_shared_hash;
ALTER INDEX memories_expiry RENAME TO memories_shared_expiry;
ALTER INDEX memories_tsv RENAME TO memories_shared_tsv;
ALTER INDEX memories_embedding RENAME TO memories_shared_embedding;
CREATE TABLE memories (
    tenant text NOT NULL,
    id text COLLATE "C" NOT NULL,
    user_name text NOT NULL,
    namespace text NOT NULL,
    content text NOT NULL,
    content_hash text NOT NULL,
    metadata json NOT NULL,
    meta_kv text[] NOT NULL,
    tags text[] NOT NULL,
    importance double precision NOT NULL,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL,
    expires_at bigint NOT NULL,
    size integer NOT NULL,
    embedding vector({dim}) NOT NULL,
    tsv tsvector GENERATED ALWAYS AS (
        to_tsvector('hanzo_english', content)
        || setweight(to_tsvector('simple', 'tenant' || md5(tenant)), 'D')
    ) STORED,
    PRIMARY KEY (tenant, id)
) PARTITION BY LIST (tenant);
ALTER TABLE memories ALTER COLUMN embedding SET STORAGE MAIN;
CREATE INDEX memories_order ON memories (tenant, created_at, id);
CREATE INDEX memories_hash ON memories (tenant, content_hash);
CREATE INDEX memories_expiry ON memories (tenant, expires_at);
CREATE INDEX memories_tsv ON memories USING gin (tsv) WITH (fastupdate = off);
CREATE INDEX memories_embedding ON memories
    USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64);
ALTER TABLE memories ATTACH PARTITION memories_shared DEFAULT;
ALTER TABLE memories ENABLE ROW LEVEL SECURITY;
ALTER TABLE memories FORCE ROW LEVEL SECURITY;
CREATE POLICY memories_tenant ON memories
    USING (tenant || '' = current_setting('hanzo.tenant', true))
    WITH CHECK (tenant = current_setting('hanzo.tenant', true));
""",
    ),
]

#: The default partition (migration 1's table), where every tenant's rows start.
SHARED_PARTITION = "memories_shared"
_PARTITIONS = (
    "SELECT c.relname, c.oid FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
    "WHERE i.inhparent = 'memories'::regclass"
)

_COLS = (
    "tenant, id, user_name, namespace, content, content_hash, metadata, meta_kv, tags, "
    "importance, created_at, updated_at, expires_at, size, embedding"
)
_SELECT = ", ".join("m." + c.strip() for c in _COLS.split(","))
#: Listings and search hits carry no vector (as with the Redis backend): less to send.
_SELECT_NO_VEC = _SELECT.replace("m.embedding", "NULL::vector")
_UPSERT = f"""
INSERT INTO memories ({_COLS}) VALUES ({", ".join(["%s"] * 15)})
ON CONFLICT (tenant, id) DO UPDATE SET
    user_name = excluded.user_name, namespace = excluded.namespace,
    content = excluded.content, content_hash = excluded.content_hash,
    metadata = excluded.metadata, meta_kv = excluded.meta_kv, tags = excluded.tags,
    importance = excluded.importance, created_at = excluded.created_at,
    updated_at = excluded.updated_at, expires_at = excluded.expires_at,
    size = excluded.size, embedding = excluded.embedding
"""


def _tenant_token(tenant: str) -> str:
    """The lexeme naming ``tenant`` in ``tsv`` (the migration's ``'tenant' || md5(tenant)``)."""
    return "tenant" + hashlib.md5(tenant.encode()).hexdigest()  # noqa: S324 - a name, not a secret


class SchemaError(RuntimeError):
    """The database is not migrated, or not safe to serve from (RLS would not apply)."""


def _row(r: Record) -> tuple[Any, ...]:
    return (
        r.tenant, r.id, r.user, r.namespace, r.content, r.content_hash,
        json.dumps(r.metadata), r.meta_kv, list(r.tags), r.importance, r.created_at,
        r.updated_at, r.expires_at, r.size, np.asarray(r.vector, dtype=np.float32),
    )  # fmt: skip


#: COPY's binary types for :func:`_copy_row`, column by column (``_COLS``).
_COPY_TYPES = [
    "text", "text", "text", "text", "text", "text", "json", "text[]", "text[]",
    "float8", "int8", "int8", "int8", "int4", "vector",
]  # fmt: skip


def _copy_row(r: Record) -> tuple[Any, ...]:
    """:func:`_row` for binary COPY: the json column takes the object itself."""
    row = list(_row(r))
    row[6] = r.metadata
    return tuple(row)


def _record(row: Any) -> Record:
    return Record(
        tenant=row[0], id=row[1], user=row[2], namespace=row[3], content=row[4],
        content_hash=row[5], metadata=readable_metadata(row[6]), tags=list(row[8]),
        importance=row[9],
        created_at=row[10], updated_at=row[11], expires_at=row[12],
        vector=_array(row[14]),
    )  # fmt: skip


def _array(value: Any) -> np.ndarray:
    """pgvector's loader gives a ``Vector`` (binary results) or an ndarray (text)."""
    if value is None:
        return np.zeros(0, dtype=np.float32)
    if hasattr(value, "to_numpy"):
        value = value.to_numpy()
    return np.asarray(value, dtype=np.float32)


def _where(q: Query) -> tuple[str, list[Any]]:
    conds = ["m.tenant = %s", "m.user_name = ANY(%s)", "m.expires_at > %s"]
    params: list[Any] = [q.tenant, list(q.users), q.now]
    if q.namespace is not None:
        conds.append("m.namespace = %s")
        params.append(q.namespace)
    if q.created_after is not None:
        conds.append("m.created_at > %s")
        params.append(q.created_after)
    if q.created_before is not None:
        conds.append("m.created_at < %s")
        params.append(q.created_before)
    if q.tags:
        conds.append("m.tags @> %s::text[]")
        params.append(list(q.tags))
    if q.meta_kv:
        conds.append("m.meta_kv @> %s::text[]")
        params.append(q.meta_kv)
    return " AND ".join(conds), params


class PostgresBackend(MemoryBackend):
    name = "postgres"

    def __init__(
        self,
        dsn: str,
        dim: int,
        *,
        migrate_dsn: str | None = None,
        ef_search: int = EF_SEARCH,
        pool_size: int = 10,
    ) -> None:
        self._dsn = dsn
        self._migrate_dsn = migrate_dsn
        self.dim = dim
        self.ef_search = ef_search
        self.pool_size = pool_size
        self._pool: AsyncConnectionPool | None = None
        self._sizes: dict[str, tuple[int, float]] = {}

    def __repr__(self) -> str:  # never show the DSN: it carries the password
        return f"PostgresBackend(dim={self.dim})"

    @property
    def pool(self) -> AsyncConnectionPool:
        if self._pool is None:
            raise RuntimeError("backend not open")
        return self._pool

    # -- lifecycle -----------------------------------------------------------------------

    async def open(self) -> None:
        async with await psycopg.AsyncConnection.connect(self._dsn) as conn:
            app_role = await self._current_user(conn)
            if self._migrate_dsn is not None:
                await self._migrate(app_role)
            await self._check_schema(conn)
        self._pool = AsyncConnectionPool(
            self._dsn, min_size=1, max_size=self.pool_size, open=False,
            configure=register_vector_async, kwargs={"autocommit": True},
        )  # fmt: skip
        await self._pool.open(wait=True, timeout=15)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @staticmethod
    async def _current_user(conn: psycopg.AsyncConnection) -> str:
        row = await (await conn.execute("SELECT current_user")).fetchone()
        assert row is not None
        return str(row[0])

    async def _migrate(self, app_role: str) -> None:
        """Apply what is missing, one transaction per version, under an advisory lock so
        replicas starting together do not race; then (re)grant the application role DML."""
        assert self._migrate_dsn is not None
        async with (
            await psycopg.AsyncConnection.connect(self._migrate_dsn) as conn,
            conn.transaction(),
        ):
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            ext = await (
                await conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'")
            ).fetchone()
            if ext is None:
                raise SchemaError(
                    "the pgvector extension is missing: a superuser must run "
                    "CREATE EXTENSION vector in this database"
                )
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS hanzo_memory_schema "
                "(version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {
                v for (v,) in await (
                    await conn.execute("SELECT version FROM hanzo_memory_schema")
                ).fetchall()
            }  # fmt: skip
            for version, text in MIGRATIONS:
                if version in done:
                    continue
                await conn.execute(text.replace("{dim}", str(int(self.dim))).encode())
                await conn.execute(
                    "INSERT INTO hanzo_memory_schema (version) VALUES (%s)", (version,)
                )
            role = sql.Identifier(app_role)
            await conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(role))
            await conn.execute(
                sql.SQL("GRANT SELECT ON hanzo_memory_schema, hanzo_memory_settings TO {}").format(
                    role
                )
            )
            await conn.execute(
                sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON memories TO {}").format(role)
            )
            # Only the parent, whose policy binds: a partition read directly would bypass
            # it (migration 1 granted these on what is now the shared partition). Never
            # from the owner itself (an app DSN naming the owner is refused at open).
            partitions = await conn.execute(
                f"SELECT p.relname, p.oid FROM ({_PARTITIONS}) p, pg_class c "
                "WHERE c.oid = p.oid AND NOT pg_has_role(%s, c.relowner, 'USAGE')",
                (app_role,),
            )
            for partition, _ in await partitions.fetchall():
                await conn.execute(
                    sql.SQL("REVOKE ALL ON {} FROM {}").format(sql.Identifier(partition), role)
                )

    async def _check_schema(self, conn: psycopg.AsyncConnection) -> None:
        """Refuse to serve from a database that is behind, of another dimension, or where
        the application role would not be subject to the tenant policy."""
        async with conn.transaction():
            try:
                cur = await conn.execute("SELECT max(version) FROM hanzo_memory_schema")
                version = (await cur.fetchone() or (None,))[0]
                cur = await conn.execute(
                    "SELECT value FROM hanzo_memory_settings WHERE key = 'embedding_dim'"
                )
                dim = (await cur.fetchone() or (None,))[0]
            except psycopg.errors.UndefinedTable:
                version, dim = None, None
            if version != MIGRATIONS[-1][0]:
                raise SchemaError(
                    f"memory schema is at version {version}, this code needs "
                    f"{MIGRATIONS[-1][0]}: start once with the owner's migrate DSN"
                )
            if dim is None or int(dim) != self.dim:
                raise SchemaError(f"database holds {dim}-d vectors, settings say {self.dim}")
            cur = await conn.execute(
                "SELECT r.rolsuper, r.rolbypassrls, pg_has_role(current_user, c.relowner, "
                "'USAGE'), c.relrowsecurity AND c.relforcerowsecurity "
                "FROM pg_roles r, pg_class c "
                "WHERE r.rolname = current_user AND c.oid = 'memories'::regclass"
            )
            row = await cur.fetchone()
            cur = await conn.execute(
                "SELECT proleakproof FROM pg_proc "
                "WHERE oid = 'ts_match_vq(tsvector, tsquery)'::regprocedure"
            )
            leakproof = (await cur.fetchone() or (False,))[0]
            cur = await conn.execute(
                f"SELECT count(*) FROM ({_PARTITIONS}) p WHERE has_table_privilege("
                "current_user, p.oid, 'SELECT, INSERT, UPDATE, DELETE')"
            )
            open_partitions = (await cur.fetchone() or (0,))[0]
        if not leakproof:
            log.warning(
                "ts_match_vq is not LEAKPROOF in this database: under row-level security "
                "keyword search cannot use the full-text index (a superuser can run "
                "ALTER FUNCTION ts_match_vq(tsvector, tsquery) LEAKPROOF)"
            )
        assert row is not None
        superuser, bypass, owner, forced = row
        if superuser or bypass or owner or not forced or open_partitions:
            raise SchemaError(
                "the application role would not be subject to row-level security "
                f"(superuser={superuser}, bypassrls={bypass}, owner={owner}, forced={forced}, "
                f"partitions it may read directly={open_partitions}): "
                "connect as a role that owns nothing and has NOBYPASSRLS"
            )

    @asynccontextmanager
    async def tenant_transaction(
        self, tenant: str, **settings: str
    ) -> AsyncIterator[psycopg.AsyncConnection]:
        """A transaction that sees only ``tenant``'s rows, whatever its queries say."""
        # Pipeline mode: BEGIN, the settings and the first query go in one round trip.
        async with self.pool.connection() as conn, conn.pipeline(), conn.transaction():
            await self._set(conn, tenant, settings)
            yield conn

    @staticmethod
    async def _set(conn: psycopg.AsyncConnection, tenant: str, settings: dict[str, str]) -> None:
        names = ["hanzo.tenant", *settings]
        setters = ", ".join(f"set_config('{n}', %s, true)" for n in names)
        await conn.execute(f"SELECT {setters}", [tenant, *settings.values()])

    async def _fetch(self, tenant: str, query: str, params: Any, **settings: str) -> list[Any]:
        """One statement in :meth:`tenant_transaction`, in one round trip: BEGIN, the
        settings, the statement and COMMIT are sent together, and its rows are read once
        the commit's sync has brought them (fetching inside would cost a second trip)."""
        async with self.pool.connection() as conn:
            async with conn.pipeline(), conn.transaction():
                await self._set(conn, tenant, settings)
                cur = await conn.execute(query, params, binary=True)
            return await cur.fetchall()

    # -- writes --------------------------------------------------------------------------

    async def upsert(self, records: list[Record]) -> None:
        if not records:
            return
        by_tenant: dict[str, list[Record]] = {}
        for r in records:
            by_tenant.setdefault(r.tenant, []).append(r)
        # One transaction for the whole call; the tenant setting changes between groups.
        async with self.pool.connection() as conn, conn.transaction():
            for tenant, recs in by_tenant.items():
                await conn.execute("SELECT set_config('hanzo.tenant', %s, true)", (tenant,))
                async with conn.cursor() as cur:
                    await cur.executemany(_UPSERT, [_row(r) for r in recs])
        for tenant in by_tenant:
            self._sizes.pop(tenant, None)

    async def delete(self, tenant: str, ids: list[str]) -> int:
        if not ids:
            return 0
        async with self.tenant_transaction(tenant) as conn:
            cur = await conn.execute(
                "DELETE FROM memories WHERE tenant = %s AND id = ANY(%s) RETURNING 1",
                (tenant, ids),
            )
            return len(await cur.fetchall())  # (rowcount is not known in pipeline mode)

    async def erase(self, tenant: str, user: str | None) -> list[str]:
        """Every row of ``user`` (of the tenant when ``None``) deleted in one transaction.
        The HNSW and GIN entries go with the rows; the dead tuples themselves stay in the
        table's pages until autovacuum reclaims them (the app role may not VACUUM)."""
        sql, params = "DELETE FROM memories WHERE tenant = %s", [tenant]
        if user is not None:
            sql, params = sql + " AND user_name = %s", [*params, user]
        async with self.tenant_transaction(tenant) as conn:
            cur = await conn.execute(sql + " RETURNING id", params)
            return [row[0] for row in await cur.fetchall()]

    async def purge_expired(self, tenant: str, now: int) -> int:
        async with self.tenant_transaction(tenant) as conn:
            cur = await conn.execute(
                "DELETE FROM memories WHERE tenant = %s AND expires_at <= %s RETURNING 1",
                (tenant, now),
            )
            return len(await cur.fetchall())

    # -- reads ---------------------------------------------------------------------------

    async def get(self, tenant: str, ids: list[str]) -> list[Record]:
        if not ids:
            return []
        rows = await self._fetch(
            tenant,
            f"SELECT {_SELECT} FROM memories m WHERE m.tenant = %s AND m.id = ANY(%s)",
            (tenant, ids),
        )
        found = {r.id: r for r in map(_record, rows)}
        return [found[i] for i in ids if i in found]

    async def live_with_hashes(
        self, tenant: str, hashes: list[str], now: int, cap: int
    ) -> list[tuple[str, str, str, str]]:
        rows = await self._fetch(
            tenant,
            "SELECT user_name, namespace, content_hash, id FROM memories "
            "WHERE tenant = %s AND content_hash = ANY(%s) AND expires_at > %s",
            (tenant, hashes, now),
        )
        return [(u, ns, h, mid) for u, ns, h, mid in rows]

    async def list(self, q: Query, after: tuple[int, str] | None, limit: int) -> list[Record]:
        where, params = _where(q)
        if after is not None:
            where += " AND (m.created_at, m.id) > (%s, %s)"
            params += [after[0], after[1]]
        rows = await self._fetch(
            q.tenant,
            f"SELECT {_SELECT_NO_VEC} FROM memories m WHERE {where} "
            "ORDER BY m.created_at, m.id LIMIT %s",
            (*params, limit),
        )
        return [_record(r) for r in rows]

    async def _tenant_size(self, tenant: str) -> int:
        """The tenant's row count, capped just above :data:`EXACT_MAX_ROWS`; cached."""
        cached = self._sizes.get(tenant)
        if cached is not None and time.monotonic() - cached[1] < _SIZE_TTL_S:
            return cached[0]
        rows = await self._fetch(
            tenant,
            "SELECT count(*) FROM (SELECT 1 FROM memories WHERE tenant = %s LIMIT %s) s",
            (tenant, EXACT_MAX_ROWS + 1),
        )
        size = int(rows[0][0])
        self._sizes[tenant] = (size, time.monotonic())
        return size

    def ann_query(
        self, q: Query, vector: np.ndarray, k: int
    ) -> tuple[str, list[Any], dict[str, str]]:
        """The HNSW statement of :meth:`vector_search`, its parameters and settings (the
        benchmark EXPLAINs exactly this). ``m.tenant = %s`` also prunes the scan to the
        tenant's partition: its own graph when it has one.

        Relaxed order lets the iterative scan go on until ``k`` rows pass the filters (the
        caller re-sorts what it found); with sorts off the only plan left is the HNSW scan,
        rather than one chosen from statistics that lag behind bulk loads."""
        where, params = _where(q)
        query = (
            f"SELECT {_SELECT_NO_VEC}, m.embedding <=> %s AS dist FROM memories m "
            f"WHERE {where} ORDER BY m.embedding <=> %s LIMIT %s"
        )
        settings = {
            "hnsw.ef_search": str(max(self.ef_search, k)),
            "hnsw.iterative_scan": "relaxed_order",
            "enable_sort": "off",
        }
        return query, [vector, *params, vector, k], settings

    async def vector_search(
        self, q: Query, vector: np.ndarray, k: int
    ) -> list[tuple[Record, float]]:
        vec = np.asarray(vector, dtype=np.float32)
        rows: list[Any] = []
        if await self._tenant_size(q.tenant) > EXACT_MAX_ROWS:
            query, params, settings = self.ann_query(q, vec, k)
            rows = await self._fetch(q.tenant, query, params, **settings)
        if len(rows) < k:
            where, params = _where(q)
            # "+ 0" keeps the planner off the HNSW index: an exact scan of the admitted rows.
            rows = await self._fetch(
                q.tenant,
                f"SELECT {_SELECT_NO_VEC}, m.embedding <=> %s AS dist FROM memories m "
                f"WHERE {where} ORDER BY (m.embedding <=> %s) + 0, m.id LIMIT %s",
                (vec, *params, vec, k),
            )
        rows.sort(key=lambda r: (r[15], r[1]))
        return [(_record(r), 1.0 - float(r[15])) for r in rows]

    async def keyword_search(self, q: Query, text: str, k: int) -> list[tuple[Record, float]]:
        terms = keyword_terms(text)
        if not terms:
            return []
        # Terms are alphanumeric only (keyword_terms), so quoting them is all to_tsquery needs.
        tsquery = " | ".join(f"'{t}'" for t in terms)
        where, params = _where(q)
        # The tenant is matched through its token in the full-text index (not the btree
        # on tenant, which would rank every memory of a large tenant): GIN intersects the
        # tenant's postings with the words', and only those rows are ranked.
        where = where.replace("m.tenant = %s", "m.tenant || '' = %s", 1)
        rows = await self._fetch(
            q.tenant,
            f"SELECT {_SELECT_NO_VEC}, ts_rank(m.tsv, tq, 1) AS score "
            "FROM memories m, to_tsquery('hanzo_english', %s) tq "
            "WHERE m.tsv @@ (to_tsquery('simple', %s) && to_tsquery('hanzo_english', %s)) "
            f"AND {where} ORDER BY score DESC, m.id LIMIT %s",
            (tsquery, _tenant_token(q.tenant), tsquery, *params, k),
        )
        return [(_record(r), float(r[15])) for r in rows]

    async def usage(self, tenant: str) -> Usage:
        (row,) = await self._fetch(
            tenant,
            "SELECT count(*), COALESCE(sum(size), 0) FROM memories WHERE tenant = %s",
            (tenant,),
        )
        return Usage(count=int(row[0]), bytes=int(row[1]))


def partition_name(tenant: str) -> str:
    """The table holding ``tenant``'s rows once it has a partition of its own."""
    return "memories_t_" + hashlib.sha256(tenant.encode()).hexdigest()[:24]


@dataclass(frozen=True, slots=True)
class BulkLoad:
    """What :func:`bulk_load` did, timed by step (the index build dominates)."""

    partition: str
    rows_copied: int
    rows_moved: int
    copy_s: float
    index_s: float
    attach_s: float


async def bulk_load(
    owner_dsn: str,
    tenant: str,
    records: Iterable[Record],
    *,
    maintenance_work_mem: str = "1GB",
    parallel_workers: int = 2,
) -> BulkLoad:
    """Give ``tenant`` a partition of its own, filled with ``records`` (none: just move the
    tenant's rows out of the shared partition), with its own HNSW graph.

    The operator's path for large imports and large tenants, run as the schema owner (the
    application role cannot): rows go in by binary COPY into a new table with no index,
    then every index of the parent is built once over them (HNSW with
    ``maintenance_work_mem`` and parallel workers: minutes for a 100k tenant, against
    hours inserting row by row through the graph), then the tenant's rows already in the
    shared partition move in (a record of the same id wins over them), and the table is
    attached as the tenant's partition. One transaction: on any error nothing changed.
    The shared partition is locked against writes from the move to the commit (seconds:
    ATTACH scans it to check it holds no row of the tenant)."""
    name = partition_name(tenant)
    table = sql.Identifier(name)
    cols = sql.SQL(_COLS)
    async with await psycopg.AsyncConnection.connect(owner_dsn) as conn, conn.transaction():
        await register_vector_async(conn)
        await conn.execute(
            "SELECT set_config('hanzo.tenant', %s, true), "
            "set_config('maintenance_work_mem', %s, true), "
            "set_config('max_parallel_maintenance_workers', %s, true)",
            (tenant, maintenance_work_mem, str(parallel_workers)),
        )
        if await (await conn.execute("SELECT to_regclass(%s)", (name,))).fetchone() != (None,):
            raise SchemaError(f"tenant {tenant!r} already has a partition of its own ({name})")
        await conn.execute(
            sql.SQL(
                "CREATE TABLE {} (LIKE memories INCLUDING DEFAULTS INCLUDING GENERATED "
                "INCLUDING STORAGE)"
            ).format(table)
        )
        t = time.perf_counter()
        copied = 0
        async with (
            conn.cursor() as cur,
            cur.copy(
                sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(table, cols)
            ) as copy,
        ):
            copy.set_types(_COPY_TYPES)
            for record in records:
                if record.tenant != tenant:
                    raise ValueError(f"a record of tenant {record.tenant!r} in {tenant!r}'s load")
                await copy.write_row(_copy_row(record))
                copied += 1
        copy_s = time.perf_counter() - t
        t = time.perf_counter()
        # The parent's own definitions, so ATTACH adopts these indexes instead of building
        # its own; the primary key as a constraint, which is what ATTACH matches it to.
        await conn.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (tenant, id)").format(table))
        defs = await (
            await conn.execute(
                "SELECT pg_get_indexdef(indexrelid) FROM pg_index "
                "WHERE indrelid = 'memories'::regclass AND NOT indisprimary"
            )
        ).fetchall()
        for (definition,) in defs:
            head, found, rest = definition.partition(" ON ONLY public.memories ")
            if not found:
                raise SchemaError(f"unexpected index definition on memories: {definition}")
            await conn.execute(
                sql.SQL("{} ON {} {}").format(sql.SQL(head.rsplit(" ", 1)[0]), table, sql.SQL(rest))
            )
        await conn.execute(sql.SQL("ANALYZE {}").format(table))
        index_s = time.perf_counter() - t
        t = time.perf_counter()
        shared = sql.Identifier(SHARED_PARTITION)
        await conn.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(shared))
        cur = await conn.execute(
            sql.SQL(
                "INSERT INTO {} ({}) SELECT {} FROM {} WHERE tenant = %s "
                "ON CONFLICT (tenant, id) DO NOTHING"
            ).format(table, cols, cols, shared),
            (tenant,),
        )
        moved = cur.rowcount
        await conn.execute(sql.SQL("DELETE FROM {} WHERE tenant = %s").format(shared), (tenant,))
        await conn.execute(
            sql.SQL("ALTER TABLE memories ATTACH PARTITION {} FOR VALUES IN ({})").format(
                table, sql.Literal(tenant)
            )
        )
        # Read directly (not through the parent) it would answer to no policy: no grants,
        # and row-level security on with no policy, so even its owner reads nothing there.
        await conn.execute(sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(table))
        await conn.execute(sql.SQL("ALTER TABLE {} FORCE ROW LEVEL SECURITY").format(table))
        await conn.execute(
            sql.SQL(
                "ALTER TABLE {} SET (autovacuum_analyze_scale_factor = 0.02, "
                "autovacuum_vacuum_scale_factor = 0.05)"
            ).format(table)
        )
        attach_s = time.perf_counter() - t
    return BulkLoad(name, copied, moved, copy_s, index_s, attach_s)


def backend_from_settings(settings: MemorySettings) -> PostgresBackend:
    """``HANZO_MEMORY_BACKEND=postgres``: the DSNs are secrets, read here and nowhere logged."""
    if settings.postgres_dsn is None:
        raise SchemaError("HANZO_MEMORY_POSTGRES_DSN is required for the postgres backend")
    migrate = settings.postgres_migrate_dsn
    return PostgresBackend(
        settings.postgres_dsn.get_secret_value(),
        settings.embedding_dim,
        migrate_dsn=migrate.get_secret_value() if migrate else None,
        ef_search=settings.postgres_ef_search,
    )
