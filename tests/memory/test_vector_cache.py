"""The SQLite backend's in-memory vector cache: exact scan and the HNSW path agree."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from memory_service.backends import vector_cache
from memory_service.backends.base import NEVER, Query
from memory_service.backends.vector_cache import TenantVectors

DIM = 32


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def filled(n: int, seed: int = 0) -> tuple[TenantVectors, np.ndarray]:
    rng = np.random.default_rng(seed)
    tv = TenantVectors(DIM, capacity=8)
    vecs = unit(rng, n)
    users = ["alice" if i % 3 else "" for i in range(n)]
    tv.put([f"m{i}" for i in range(n)], vecs, users, ["ns" if i % 2 else "other" for i in range(n)],
           list(range(n)), [NEVER] * n)  # fmt: skip
    return tv, vecs


def exact(tv: TenantVectors, q: Query, v: np.ndarray, k: int) -> list[str]:
    mask = tv.mask(q)
    scores = np.where(mask, tv.vecs[: tv.n] @ v, -np.inf)
    order = np.argsort(-scores, kind="stable")
    return [tv.ids[i] for i in order[:k] if scores[i] != -np.inf]


@pytest.fixture
def small_ann(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vector_cache, "ANN_MIN_ROWS", 500)


def test_exact_scan_respects_mask_and_order():
    tv, vecs = filled(300)
    q = Query(tenant="t", user="bob", now=1, namespace="ns")
    got = tv.top(q, vecs[1], 5)
    assert [i for i, _ in got] == exact(tv, q, vecs[1], 5)
    assert all(int(i[1:]) % 3 == 0 and int(i[1:]) % 2 == 1 for i, _ in got)  # shared, "ns"
    scores = [s for _, s in got]
    assert scores == sorted(scores, reverse=True)


def test_hnsw_path_matches_exact_and_follows_writes(small_ann):
    tv, vecs = filled(3000)
    assert tv.needs_index()
    rows, snap = tv.snapshot()
    # Writes while the index is being built are replayed when it is installed.
    rng = np.random.default_rng(7)
    moved = unit(rng, 1)
    tv.put(["m5"], moved, ["alice"], ["ns"], [5], [NEVER])
    tv.remove(["m10"])
    tv.install(TenantVectors.build_index(DIM, rows, snap, threads=1))
    assert tv.ann is not None and not tv.needs_index()
    tv.put(["new"], unit(rng, 1), ["alice"], ["ns"], [9999], [NEVER])
    q = Query(tenant="t", user="alice", now=1)
    hits = 0
    probes = list(range(0, 3000, 97))
    for i in probes:
        got = [m for m, _ in tv.top(q, vecs[i], 10)]
        want = exact(tv, q, vecs[i], 10)
        hits += len(set(got) & set(want))
        assert "m10" not in got
    assert hits / (10 * len(probes)) >= 0.95
    assert tv.top(q, moved[0], 1)[0][0] == "m5"  # the updated vector is what is indexed
    assert tv.top(q, tv.vecs[tv.row_of["new"]], 1)[0][0] == "new"
    # A selective filter falls back to an exact scan of the admitted rows.
    rare = Query(tenant="t", user="alice", now=1, created_after=2990)
    assert [m for m, _ in tv.top(rare, vecs[0], 20)] == exact(tv, rare, vecs[0], 20)


async def test_a_store_while_a_filtered_search_reads_its_filter_repeats_no_hit(tmp_path):
    """A filtered search ranks a page, reads which rows pass the filter, and ranks the next
    page; a store landing during that read shifts the ranking by one, and the next page
    started with the last one's final row again: the same memory twice in one answer."""
    from memory_service.backends.sqlite import SqliteBackend
    from tests.memory.test_keyword_path import record

    rng = np.random.default_rng(1)
    backend = SqliteBackend(tmp_path / "pages.sqlite3", 8)
    await backend.open()
    try:
        vecs = rng.random((400, 8)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        query = vecs[0] + vecs[1]
        query /= np.linalg.norm(query)
        order = np.argsort(-(vecs @ query))
        tagged = {int(order[5]), int(order[63]), int(order[100])}  # the first page is 64
        await backend.upsert(
            [
                replace(
                    record("t", i, f"row {i}"), vector=vecs[i], tags=["x"] if i in tagged else []
                )
                for i in range(400)
            ]
        )
        read_filter, stored = backend._matching, []

        async def store_meanwhile(q: Query, ids: list[str]) -> set[str]:
            passing = await read_filter(q, ids)
            if not stored:  # another request's store, the best match of all
                stored.append(replace(record("t", 999, "meanwhile"), vector=query))
                await backend.upsert(stored)
            return passing

        backend._matching = store_meanwhile  # type: ignore[method-assign]
        q = Query(tenant="t", user="u", now=2000, tags=("x",))
        ids = [r.id for r, _ in await backend.vector_search(q, query, 10)]
        assert sorted(ids) == sorted(f"t-{i}" for i in tagged)
    finally:
        await backend.close()
