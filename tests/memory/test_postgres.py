"""The postgres backend's own guarantees, on a real PostgreSQL: row-level security holds
when a query forgets its tenant condition, the backend refuses a role RLS would not bind,
and the HNSW path (large tenants) finds what an exact scan finds, filters included."""

from __future__ import annotations

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


async def test_refuses_an_unmigrated_database(postgres):
    db = postgres.create_database("hanzo_memory_empty")
    b = pg.PostgresBackend(db.app_dsn, DIM)  # no migrate DSN: nothing creates the schema
    with pytest.raises(pg.SchemaError, match="version"):
        await b.open()
    await b.close()


async def test_hnsw_path_matches_exact_scan_with_filters(backend, monkeypatch):
    tenant = f"big-{uuid.uuid4().hex[:8]}"
    rng = np.random.default_rng(7)
    n = 3000
    vecs = unit(rng, n)
    recs = [
        record(tenant, f"m{i}", vecs[i], namespace="rare" if i % 50 == 0 else "default",
               tags=["x"] if i % 3 == 0 else [], user="alice" if i % 2 else "bob")
        for i in range(n)
    ]  # fmt: skip
    await backend.upsert(recs)
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
