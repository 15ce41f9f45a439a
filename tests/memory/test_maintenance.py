"""Index maintenance: after SQLite's HNSW or LanceDB's IVF_SQ is built, search stays
right (recall against an exact scan, filters, later writes and deletes)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from memory_service.backends import lance, vector_cache
from memory_service.backends.base import NEVER, MemoryBackend, Query, Record
from memory_service.backends.lance import LanceBackend
from memory_service.backends.sqlite import SqliteBackend
from memory_service.clock import now_us

DIM = 384
N = 1500


def make(kind: str, root: Path) -> MemoryBackend:
    return SqliteBackend(root / "m.db", DIM) if kind == "sqlite" else LanceBackend(root / "l", DIM)


@pytest.mark.parametrize("kind", ["sqlite", "lancedb"])
async def test_search_after_index_build(kind: str, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(vector_cache, "ANN_MIN_ROWS", 500)
    monkeypatch.setattr(lance, "INDEX_MIN_ROWS", 500)
    backend = make(kind, tmp_path)
    await backend.open()
    try:
        rng = np.random.default_rng(3)
        centroids = rng.standard_normal((50, DIM)).astype(np.float32)
        vecs = centroids[rng.integers(0, 50, N)] + 0.8 * rng.standard_normal((N, DIM)).astype(
            np.float32
        )
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        t0 = now_us()
        recs = [
            Record(tenant="t", id=f"m{i}", user="u",
                   namespace="scarce" if i % 100 == 0 else "ns" if i % 4 else "rare",
                   content=f"word{i % 7} text", content_hash=str(i), metadata={}, tags=[],
                   importance=0.5, created_at=t0 + i, updated_at=t0, expires_at=NEVER,
                   vector=vecs[i])
            for i in range(N)
        ]  # fmt: skip
        await backend.upsert(recs)
        q = Query(tenant="t", user="u", now=now_us())
        await backend.vector_search(q, vecs[0], 1)  # SQLite caches the tenant on first search
        await backend.maintain()
        if kind == "sqlite":
            assert backend._cache["t"].ann is not None  # type: ignore[attr-defined]
        else:
            table = backend._tables["t"]  # type: ignore[attr-defined]
            assert "vector_idx" in {i.name for i in await table.list_indices()}

        overlap = []
        for i in range(0, N, 50):
            got = [r.id for r, _ in await backend.vector_search(q, vecs[i], 10)]
            want = [f"m{j}" for j in np.argsort(-(vecs @ vecs[i]))[:10]]
            overlap.append(len(set(got) & set(want)) / 10)
        assert np.mean(overlap) >= 0.9
        rare = Query(tenant="t", user="u", now=now_us(), namespace="rare")
        hits = await backend.vector_search(rare, vecs[1], 10)
        assert len(hits) == 10 and all(r.namespace == "rare" for r, _ in hits)
        # a filter that 1% of rows pass: the exact top 10 of those, wherever the index put them
        scarce = Query(tenant="t", user="u", now=now_us(), namespace="scarce")
        got = [r.id for r, _ in await backend.vector_search(scarce, vecs[1], 10)]
        rows = np.arange(0, N, 100)
        assert got == [f"m{j}" for j in rows[np.argsort(-(vecs[rows] @ vecs[1]))[:10]]]

        # Writes and deletes after the build are visible at once.
        probe = vecs[7]
        await backend.delete("t", ["m7"])
        assert "m7" not in [r.id for r, _ in await backend.vector_search(q, probe, 10)]
        fresh = Record(tenant="t", id="fresh", user="u", namespace="ns", content="fresh",
                       content_hash="f", metadata={}, tags=[], importance=0.5,
                       created_at=now_us(), updated_at=now_us(), expires_at=NEVER,
                       vector=probe)  # fmt: skip
        await backend.upsert([fresh])
        top = await backend.vector_search(q, probe, 1)
        assert top[0][0].id == "fresh" and top[0][1] == pytest.approx(1.0, abs=1e-3)
    finally:
        await backend.close()


async def test_lance_narrow_filter_gets_its_exact_top_k(tmp_path: Path, monkeypatch):
    """A filter that 1% of rows pass, one partition probed: the unfiltered k best hold
    none of them, so the pre-filtered search must answer, with the filter's exact top 10."""
    monkeypatch.setattr(lance, "INDEX_MIN_ROWS", 500)
    backend = LanceBackend(tmp_path / "l", DIM, nprobes=1)
    await backend.open()
    try:
        rng = np.random.default_rng(5)
        vecs = rng.standard_normal((N, DIM)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        t0 = now_us()
        await backend.upsert([
            Record(tenant="t", id=f"m{i}", user="u", namespace="scarce" if i % 100 == 0 else "ns",
                   content="text", content_hash=str(i), metadata={}, tags=[], importance=0.5,
                   created_at=t0 + i, updated_at=t0, expires_at=NEVER, vector=vecs[i])
            for i in range(N)
        ])  # fmt: skip
        await backend.maintain()
        scarce = Query(tenant="t", user="u", now=now_us(), namespace="scarce")
        got = [r.id for r, _ in await backend.vector_search(scarce, vecs[1], 10)]
        rows = np.arange(0, N, 100)
        assert got == [f"m{j}" for j in rows[np.argsort(-(vecs[rows] @ vecs[1]))[:10]]]
    finally:
        await backend.close()


async def test_lance_index_has_its_partitions_and_search_probes_nprobes(
    tmp_path: Path, monkeypatch
):
    """The IVF index gets ``index_partitions(rows)`` partitions (lancedb 0.40 ignored
    ``num_partitions`` and built 4 at 100k) and an unfiltered search probes ``nprobes`` of
    them (with the maximum left open, it probed all: the whole table on every query).
    Lance's own plan metrics say what the index did."""
    monkeypatch.setattr(lance, "INDEX_MIN_ROWS", 500)
    backend = LanceBackend(tmp_path / "l", DIM, nprobes=3)
    await backend.open()
    try:
        vecs = np.random.default_rng(8).standard_normal((N, DIM)).astype(np.float32)
        t0 = now_us()
        await backend.upsert([
            Record(tenant="t", id=f"m{i}", user="u", namespace="ns", content="text",
                   content_hash=str(i), metadata={}, tags=[], importance=0.5,
                   created_at=t0 + i, updated_at=t0, expires_at=NEVER, vector=vecs[i])
            for i in range(N)
        ])  # fmt: skip
        await backend.maintain()
        table = backend._tables["t"]  # type: ignore[attr-defined]

        def metric(plan: str, name: str) -> int:
            return int(re.search(name + r"=(\d+)", plan).group(1))  # type: ignore[union-attr]

        plan = (
            await backend.vector_query(table, vecs[1])
            .select(["_distance"])
            .limit(10)
            .analyze_plan()
        )
        want = lance.index_partitions(N)  # asked for by size: Lance rounds the count
        assert abs(metric(plan, "partitions_ranked") - want) <= 1 + want // 50
        assert metric(plan, "partitions_searched") == 3
        assert metric(plan, "index_comparisons") < N / 10
        wide = backend.vector_query(table, vecs[1], wide=True)
        plan = await wide.select(["_distance"]).limit(10).analyze_plan()
        assert metric(plan, "partitions_searched") > 3  # the pre-filtered retry may widen
    finally:
        await backend.close()


async def test_lance_table_without_the_packed_record_column_still_serves(tmp_path: Path):
    """A tenant table created before the packed ``record`` column is written and read
    column by column; a new table reads its results from two columns."""
    backend = LanceBackend(tmp_path / "l", DIM)
    await backend.open()
    try:
        legacy = pa.schema([f for f in backend.schema if f.name != "record"])
        await backend._db.create_table(backend.table_name("old"), schema=legacy)  # type: ignore[attr-defined]
        vecs = np.eye(DIM, dtype=np.float32)[:5]
        t0 = now_us()
        for tenant in ("old", "new"):
            await backend.upsert([
                Record(tenant=tenant, id=f"m{i}", user="u", namespace="ns",
                       content=f"tea word{i}", content_hash=str(i), metadata={"i": i},
                       tags=[f"t{i}"], importance=0.5, created_at=t0 + i, updated_at=t0 + 9,
                       expires_at=NEVER, vector=vecs[i])
                for i in range(5)
            ])  # fmt: skip
            q = Query(tenant=tenant, user="u", now=now_us())
            (top, _), *_ = await backend.vector_search(q, vecs[3], 2)
            (word, _), *_ = await backend.keyword_search(q, "word2", 2)
            listed = await backend.list(q, None, 10)
            (got,) = await backend.get(tenant, ["m4"])
            for r, i in ((top, 3), (word, 2), (listed[1], 1), (got, 4)):
                assert (r.id, r.content, r.metadata, r.tags) == (
                    f"m{i}",
                    f"tea word{i}",
                    {"i": i},
                    [f"t{i}"],
                )
                assert (r.created_at, r.updated_at, r.user, r.namespace) == (
                    t0 + i,
                    t0 + 9,
                    "u",
                    "ns",
                )
        assert backend.shown_columns("old") == backend.result_columns
        assert backend.shown_columns("new") == ["content", "record"]
    finally:
        await backend.close()


async def test_lance_searches_log_no_warning_per_query(tmp_path: Path, capfd) -> None:
    """Lance warns on every search that leaves its score column implicit: a line per query
    in the service's log, and not JSON."""
    backend = LanceBackend(tmp_path / "l", DIM)
    await backend.open()
    try:
        vecs = np.eye(DIM, dtype=np.float32)[:20]
        t0 = now_us()
        await backend.upsert([
            Record(tenant="t", id=f"m{i}", user="u", namespace="ns", content=f"tea word{i}",
                   content_hash=str(i), metadata={}, tags=[], importance=0.5,
                   created_at=t0 + i, updated_at=t0, expires_at=NEVER, vector=vecs[i])
            for i in range(20)
        ])  # fmt: skip
        q = Query(tenant="t", user="u", now=now_us())
        capfd.readouterr()
        assert (await backend.vector_search(q, vecs[3], 5))[0][0].id == "m3"
        assert len(await backend.keyword_search(q, "tea", 5)) == 5
        assert "warn" not in capfd.readouterr().err.lower()
    finally:
        await backend.close()
