"""SQLite keyword search ranks the words' postings, not the tenant's: still one tenant's rows.

Ranking without the tenant token in the FTS5 MATCH makes keyword search independent of the
tenant's size; these tests pin that the tenant is still enforced (by the join), that a
tenant whose rows rank below another tenant's still gets them, and that the fallback for
words common across tenants (the tenant token back in the MATCH) answers the same.
"""

from __future__ import annotations

import numpy as np
import pytest

from memory_service.backends import sqlite
from memory_service.backends.base import NEVER, Query, Record
from memory_service.backends.sqlite import SqliteBackend


def record(tenant: str, i: int, content: str) -> Record:
    v = np.zeros(8, dtype=np.float32)
    v[i % 8] = 1.0
    return Record(
        tenant=tenant, id=f"{tenant}-{i}", user="u", namespace="default", content=content,
        content_hash=f"h{i}", metadata={}, tags=[], importance=0.5, created_at=1000 + i,
        updated_at=1000 + i, expires_at=NEVER, vector=v,
    )  # fmt: skip


@pytest.fixture
async def db(tmp_path):
    backend = SqliteBackend(tmp_path / "kw.sqlite3", 8)
    await backend.open()
    # "big" ranks far above "small" for "cobalt": short rows, the word repeated
    await backend.upsert([record("big", i, f"cobalt cobalt cobalt {i}") for i in range(300)])
    await backend.upsert(
        [record("small", i, f"a long row about many things and cobalt once {i}") for i in range(3)]
    )
    yield backend
    await backend.close()


@pytest.mark.parametrize("words_only_max", [sqlite.WORDS_ONLY_MAX, 0])
async def test_a_tenant_gets_its_rows_ranked_below_another_tenants(db, monkeypatch, words_only_max):
    monkeypatch.setattr(sqlite, "WORDS_ONLY_MAX", words_only_max)
    q = Query(tenant="small", user="u", now=2000)
    hits = await db.keyword_search(q, "cobalt", 10)
    assert sorted(r.id for r, _ in hits) == ["small-0", "small-1", "small-2"]
    big = await db.keyword_search(Query(tenant="big", user="u", now=2000), "cobalt", 10)
    assert len(big) == 10 and all(r.tenant == "big" for r, _ in big)
    assert [s for _, s in big] == sorted((s for _, s in big), reverse=True)
    assert await db.keyword_search(Query(tenant="none", user="u", now=2000), "cobalt", 10) == []


async def test_both_paths_rank_alike(db, monkeypatch):
    q = Query(tenant="big", user="u", now=2000)
    words_only = [r.id for r, _ in await db.keyword_search(q, "cobalt 7", 5)]
    monkeypatch.setattr(sqlite, "WORDS_ONLY_MAX", 0)
    tenant_path = [r.id for r, _ in await db.keyword_search(q, "cobalt 7", 5)]
    assert words_only[0] == tenant_path[0] == "big-7"
    assert await db.keyword_search(q, "absent", 5) == []
