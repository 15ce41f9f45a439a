"""The postgres backend's own guarantees, on a real PostgreSQL: row-level security holds
when a query forgets its tenant condition, the backend refuses a role RLS would not bind,
the HNSW path (large tenants) finds what an exact scan finds, filters included, in the
shared partition and in a tenant's own; migration 2 partitions a database of migration 1
in place; a bulk load gives a tenant its own partition and keeps its earlier rows."""

from __future__ import annotations

# Partition names in SQL text come from the module under test, not from input.
# ruff: noqa: S608
import asyncio
import uuid
from collections.abc import AsyncIterator

import numpy as np
import psycopg
import pytest

from hanzo_stack.postgres import Database, PostgresServer
from memory_service.backends import postgres as pg
from memory_service.backends.base import NEVER, Query, Record
from memory_service.clock import now_us

DIM = 384


@pytest.fixture(scope="module")
def database(postgres: PostgresServer) -> Database:
    return postgres.create_database("hanzo_memory_rls")


@pytest.fixture
async def backend(database: Database) -> AsyncIterator[pg.PostgresBackend]:
    b = pg.PostgresBackend(database.app_dsn, DIM, migrate_dsn=database.owner_dsn)
    await b.open()
    try:
        yield b
    finally:
        await b.close()


def record(tenant: str, mid: str, vec: np.ndarray, **kw: object) -> Record:
    now = now_us()
    fields: dict = dict(
        tenant=tenant, id=mid, user="alice", namespace="default", content=f"secret of {tenant}",
        content_hash=mid, metadata={}, tags=[], importance=0.5, created_at=now,
        updated_at=now, expires_at=NEVER, vector=vec,
    )  # fmt: skip
    fields.update(kw)
    return Record(**fields)


async def partition_of(backend: pg.PostgresBackend, tenant: str, mid: str) -> str:
    async with backend.tenant_transaction(tenant) as conn:
        cur = await conn.execute(
            "SELECT tableoid::regclass::text FROM memories WHERE tenant = %s AND id = %s",
            (tenant, mid),
        )
        return str((await cur.fetchone() or ("",))[0])


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


async def test_query_without_tenant_condition_sees_only_its_tenant(backend):
    a, b = f"a-{uuid.uuid4().hex[:8]}", f"b-{uuid.uuid4().hex[:8]}"
    vecs = unit(np.random.default_rng(1), 4)
    await backend.upsert([record(a, "m1", vecs[0]), record(a, "m2", vecs[1]),
                          record(b, "m1", vecs[2]), record(b, "m3", vecs[3])])  # fmt: skip

    # The backend's own transaction setup for tenant A, then SQL with no WHERE at all.
    async with backend.tenant_transaction(a) as conn:
        rows = await (await conn.execute("SELECT tenant, id, content FROM memories")).fetchall()
        assert sorted(rows) == [(a, "m1", f"secret of {a}"), (a, "m2", f"secret of {a}")]
        total = await (await conn.execute("SELECT count(*) FROM memories")).fetchone()
        assert total == (2,)
        # Writes without a WHERE are confined the same way.
        changed = await conn.execute("UPDATE memories SET content = 'x' RETURNING tenant")
        assert await changed.fetchall() == [(a,), (a,)]
    async with backend.tenant_transaction(b) as conn:
        rows = await (await conn.execute("SELECT id, content FROM memories")).fetchall()
        assert sorted(rows) == [("m1", f"secret of {b}"), ("m3", f"secret of {b}")]

    # A row for tenant B cannot be written from tenant A's transaction (WITH CHECK).
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        async with backend.tenant_transaction(a) as conn:
            await conn.execute("UPDATE memories SET tenant = %s", (b,))

    # With no tenant set at all, the application role sees nothing.
    async with backend.pool.connection() as conn:
        assert await (await conn.execute("SELECT count(*) FROM memories")).fetchone() == (0,)

    # And it cannot switch the policy off: it owns nothing.
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        async with backend.pool.connection() as conn:
            await conn.execute("ALTER TABLE memories NO FORCE ROW LEVEL SECURITY")


async def test_refuses_a_role_that_bypasses_rls(database):
    """Serving as the table owner would put RLS in the owner's hands: refused at open."""
    owner = pg.PostgresBackend(database.owner_dsn, DIM, migrate_dsn=database.owner_dsn)
    with pytest.raises(pg.SchemaError, match="row-level security"):
        await owner.open()
    await owner.close()


async def test_refuses_an_app_role_that_may_read_a_partition(backend, database):
    """A partition read directly answers to no policy: a grant on one is refused at open
    (and taken back by the next migrating start)."""
    grant = f"GRANT SELECT ON {pg.SHARED_PARTITION} TO hanzo_memory_rls_app"
    async with await psycopg.AsyncConnection.connect(database.owner_dsn, autocommit=True) as c:
        await c.execute(grant)
    plain = pg.PostgresBackend(database.app_dsn, DIM)  # no migrate DSN: nothing revokes it
    with pytest.raises(pg.SchemaError, match="partitions it may read directly=1"):
        await plain.open()
    await plain.close()
    migrating = pg.PostgresBackend(database.app_dsn, DIM, migrate_dsn=database.owner_dsn)
    await migrating.open()
    await migrating.close()


async def test_refuses_an_unmigrated_database(postgres):
    db = postgres.create_database("hanzo_memory_empty")
    b = pg.PostgresBackend(db.app_dsn, DIM)  # no migrate DSN: nothing creates the schema
    with pytest.raises(pg.SchemaError, match="version"):
        await b.open()
    await b.close()


@pytest.mark.parametrize("own_partition", [False, True], ids=["shared", "own-partition"])
async def test_hnsw_path_matches_exact_scan_with_filters(
    backend, database, monkeypatch, own_partition
):
    tenant = f"big-{uuid.uuid4().hex[:8]}"
    rng = np.random.default_rng(7)
    n = 3000
    vecs = unit(rng, n)
    recs = [
        record(tenant, f"m{i}", vecs[i], namespace="rare" if i % 50 == 0 else "default",
               tags=["x"] if i % 3 == 0 else [], user="alice" if i % 2 else "bob")
        for i in range(n)
    ]  # fmt: skip
    if own_partition:
        loaded = await pg.bulk_load(database.owner_dsn, tenant, recs)
        assert (loaded.rows_copied, loaded.rows_moved) == (n, 0)
        assert await partition_of(backend, tenant, "m1") == pg.partition_name(tenant)
    else:
        await backend.upsert(recs)
        assert await partition_of(backend, tenant, "m1") == pg.SHARED_PARTITION
    probes = unit(rng, 20)
    filters = [
        Query(tenant=tenant, user="alice", now=now_us()),
        Query(tenant=tenant, user="alice", now=now_us(), tags=("x",)),
        Query(tenant=tenant, user="bob", now=now_us(), namespace="rare"),  # 1% of rows
    ]
    monkeypatch.setattr(pg, "EXACT_MAX_ROWS", 100)  # this tenant now takes the HNSW path
    backend._sizes.clear()
    recalls = []
    for q in filters:
        admitted = [i for i, r in enumerate(recs) if q.matches(r)]
        for probe in probes:
            hits = await backend.vector_search(q, probe, 10)
            assert all(q.matches(r) for r, _ in hits)
            assert len(hits) == min(10, len(admitted))
            exact = sorted(admitted, key=lambda i: -float(vecs[i] @ probe))[:10]
            recalls.append(len({f"m{i}" for i in exact} & {r.id for r, _ in hits}) / 10)
            scores = [s for _, s in hits]
            assert scores == sorted(scores, reverse=True)
    assert np.mean(recalls) >= 0.95


async def test_migration_2_partitions_a_version_1_database_in_place(postgres, monkeypatch):
    """A database written by migration 1 keeps its rows, its indexes (attached, not
    rebuilt) and its wall: the old table is now the shared partition, which the
    application role can no longer read directly (it bypassed the parent's policy)."""
    db = postgres.create_database("hanzo_memory_v1")
    vecs = unit(np.random.default_rng(3), 3)
    monkeypatch.setattr(pg, "MIGRATIONS", pg.MIGRATIONS[:1])
    old = pg.PostgresBackend(db.app_dsn, DIM, migrate_dsn=db.owner_dsn)
    await old.open()
    await old.upsert([record("a", "m1", vecs[0]), record("a", "m2", vecs[1]),
                      record("b", "m1", vecs[2])])  # fmt: skip
    await old.close()
    monkeypatch.undo()

    new = pg.PostgresBackend(db.app_dsn, DIM, migrate_dsn=db.owner_dsn)
    await new.open()
    try:
        assert [r.id for r in await new.get("a", ["m1", "m2"])] == ["m1", "m2"]
        hits = await new.vector_search(Query(tenant="a", user="alice", now=now_us()), vecs[1], 5)
        assert hits[0][0].id == "m2"
        async with new.tenant_transaction("a") as conn:
            rows = await (await conn.execute("SELECT tenant, id FROM memories")).fetchall()
            assert sorted(rows) == [("a", "m1"), ("a", "m2")]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            async with new.tenant_transaction("a") as conn:
                await conn.execute(f"SELECT count(*) FROM {pg.SHARED_PARTITION}")
    finally:
        await new.close()
    async with await psycopg.AsyncConnection.connect(db.owner_dsn) as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM pg_index WHERE indrelid = %s::regclass",
            (pg.SHARED_PARTITION,),
        )
        assert await cur.fetchone() == (6,)  # the six of migration 1, none built twice
        cur = await conn.execute("SELECT max(version) FROM hanzo_memory_schema")
        assert await cur.fetchone() == (pg.MIGRATIONS[-1][0],)


async def test_bulk_load_moves_the_tenants_rows_and_keeps_the_wall(backend, database):
    tenant, other = f"bulk-{uuid.uuid4().hex[:8]}", f"other-{uuid.uuid4().hex[:8]}"
    vecs = unit(np.random.default_rng(5), 6)
    await backend.upsert([record(tenant, "old", vecs[0]), record(tenant, "same", vecs[1]),
                          record(other, "x", vecs[2])])  # fmt: skip
    loaded = await pg.bulk_load(
        database.owner_dsn, tenant,
        [record(tenant, "same", vecs[3], content="from the load"), record(tenant, "new", vecs[4])],
    )  # fmt: skip
    assert (loaded.rows_copied, loaded.rows_moved) == (2, 1)
    got = {r.id: r.content for r in await backend.get(tenant, ["old", "same", "new"])}
    assert got == {
        "old": f"secret of {tenant}",
        "same": "from the load",
        "new": f"secret of {tenant}",
    }
    assert await partition_of(backend, tenant, "old") == loaded.partition
    assert await partition_of(backend, other, "x") == pg.SHARED_PARTITION

    # The wall holds across partitions: no WHERE, still only the tenant's own rows.
    async with backend.tenant_transaction(other) as conn:
        rows = await (await conn.execute("SELECT tenant, id FROM memories")).fetchall()
        assert rows == [(other, "x")]
    async with backend.tenant_transaction(tenant) as conn:
        rows = await (await conn.execute("SELECT id FROM memories")).fetchall()
        assert sorted(rows) == [("new",), ("old",), ("same",)]
    # A new write of the tenant lands in its partition, through the parent's policy.
    await backend.upsert([record(tenant, "later", vecs[5])])
    assert await partition_of(backend, tenant, "later") == loaded.partition
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        async with backend.tenant_transaction(tenant) as conn:
            await conn.execute(f"SELECT count(*) FROM {loaded.partition}")
    # Read directly, the partition shows its owner nothing either (RLS on, no policy).
    async with await psycopg.AsyncConnection.connect(database.owner_dsn) as conn:
        cur = await conn.execute(f"SELECT count(*) FROM {loaded.partition}")
        assert await cur.fetchone() == (0,)
        # ATTACH adopted the load's indexes: one of each of the parent's, none built twice.
        cur = await conn.execute(
            "SELECT count(*) FROM pg_index WHERE indrelid = %s::regclass", (loaded.partition,)
        )
        assert await cur.fetchone() == (6,)

    with pytest.raises(pg.SchemaError, match="already has a partition"):
        await pg.bulk_load(database.owner_dsn, tenant, [])
    # A record of another tenant in the load is refused, and the load leaves nothing.
    third = f"third-{uuid.uuid4().hex[:8]}"
    with pytest.raises(ValueError, match="a record of tenant"):
        await pg.bulk_load(database.owner_dsn, third, [record(other, "y", vecs[0])])
    async with await psycopg.AsyncConnection.connect(database.owner_dsn) as conn:
        cur = await conn.execute("SELECT to_regclass(%s)", (pg.partition_name(third),))
        assert await cur.fetchone() == (None,)


async def test_own_partition_command_moves_a_tenant(backend, database, monkeypatch):
    """The operator's command: the tenant's rows move, searches find them in their place."""
    from typer.testing import CliRunner

    from memory_service.cli import cli

    tenant = f"grown-{uuid.uuid4().hex[:8]}"
    vecs = unit(np.random.default_rng(9), 3)
    await backend.upsert([record(tenant, f"m{i}", vecs[i]) for i in range(3)])
    monkeypatch.setenv("HANZO_MEMORY_BACKEND", "postgres")
    monkeypatch.setenv("HANZO_MEMORY_POSTGRES_DSN", database.app_dsn)
    monkeypatch.delenv("HANZO_MEMORY_POSTGRES_MIGRATE_DSN", raising=False)
    refused = await asyncio.to_thread(CliRunner().invoke, cli, ["own-partition", "--org", tenant])
    assert refused.exit_code != 0 and "MIGRATE_DSN" in refused.output
    monkeypatch.setenv("HANZO_MEMORY_POSTGRES_MIGRATE_DSN", database.owner_dsn)
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["own-partition", "--org", tenant])
    assert result.exit_code == 0, result.output
    assert f"3 memories now in {pg.partition_name(tenant)}" in result.output
    assert database.owner_dsn not in result.output
    assert await partition_of(backend, tenant, "m2") == pg.partition_name(tenant)
    hits = await backend.vector_search(Query(tenant=tenant, user="alice", now=now_us()), vecs[2], 3)
    assert hits[0][0].id == "m2"
