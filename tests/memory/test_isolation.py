"""Property-based isolation: no route or filter lets one tenant or user reach another's memory.

Two properties, each on every backend: (1) at the backend, list / vector / keyword results
equal the reference semantics of :meth:`Query.matches` for random memories and filters;
(2) over HTTP, tenant B never reads, finds, changes or deletes tenant A's memory, whatever
ids and filters B tries.
"""

from __future__ import annotations

import uuid

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from memory_service.backends.base import NEVER, SHARED, Query, Record
from memory_service.clock import now_us
from tests.memory.conftest import Caller

S = "/v1/memory"
PROPERTY = settings(max_examples=15)

ids = st.from_regex(r"[A-Za-z0-9_.:-]{1,40}", fullmatch=True)
tags = st.lists(st.sampled_from(["x", "y", "z", "ünï", "a b"]), max_size=3, unique=True)
meta = st.dictionaries(
    st.sampled_from(["k", "src"]), st.sampled_from(["v", "w", 1, 2.0, True]), max_size=2
)
memory = st.fixed_dictionaries(
    {"user": st.sampled_from(["alice", "bob", SHARED]), "namespace": st.sampled_from(["a", "b"]),
     "tags": tags, "metadata": meta, "expired": st.booleans()}
)  # fmt: skip
query = st.fixed_dictionaries(
    {"scope": st.sampled_from([None, "user", "org"]),
     "namespace": st.sampled_from([None, "a", "b"]),
     "tags": st.lists(st.sampled_from(["x", "y", "ünï"]), max_size=2, unique=True),
     "metadata": st.dictionaries(st.sampled_from(["k", "src"]), st.sampled_from(["v", 1, True]),
                                 max_size=1)}
)  # fmt: skip


@PROPERTY
@given(mems=st.lists(memory, min_size=1, max_size=8), q=query, seed=st.integers(0, 2**16))
async def test_backend_filters_match_reference(backend, mems, q, seed):
    tenant = f"t-{uuid.uuid4().hex[:12]}"
    other = f"t-{uuid.uuid4().hex[:12]}"
    now = now_us()
    rng = np.random.default_rng(seed)
    records = []
    for i, m in enumerate(mems):
        v = rng.standard_normal(384).astype(np.float32)
        for t in (tenant, other):  # the same ids in a second tenant must never leak in
            records.append(
                Record(
                    tenant=t,
                    id=f"id{i}",
                    user=m["user"],
                    namespace=m["namespace"],
                    content=f"common words {i}",
                    content_hash=f"h{i}",
                    metadata=m["metadata"],
                    tags=m["tags"],
                    importance=0.5,
                    created_at=now - 1000 + i,
                    updated_at=now,
                    expires_at=now - 1 if m["expired"] else NEVER,
                    vector=v / np.linalg.norm(v),
                )
            )
    await backend.upsert(records)
    query_ = Query(tenant=tenant, user="alice", now=now_us(), **{**q, "tags": tuple(q["tags"])})
    want = {r.id for r in records if r.tenant == tenant and query_.matches(r)}
    listed = await backend.list(query_, None, 100)
    assert {r.id for r in listed} == want
    assert all(r.tenant == tenant for r in listed)
    probe = rng.standard_normal(384).astype(np.float32)
    vec = await backend.vector_search(query_, probe / np.linalg.norm(probe), 50)
    assert {r.id for r, _ in vec} == want
    kw = await backend.keyword_search(query_, "common words", 50)
    assert {r.id for r, _ in kw} == want


@PROPERTY
@given(
    mid=ids, tag_list=tags, probe_id=ids, filters=query,
    org_b=st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True),
)  # fmt: skip
async def test_no_route_crosses_tenants(client, make_caller, mid, tag_list, probe_id, filters,
                                        org_b):  # fmt: skip
    a: Caller = make_caller()
    b: Caller = make_caller(org=f"{org_b}-{uuid.uuid4().hex[:6]}", user="alice")
    content = f"tenant a secret {uuid.uuid4().hex}"
    r = await client.post(f"{S}/store", json={"id": mid, "content": content, "tags": tag_list,
                                              "scope": "org"}, headers=a.headers)  # fmt: skip
    assert r.status_code == 200, r.text
    for probe in {mid, probe_id}:
        got = await client.get(f"{S}/retrieve", params={"id": probe}, headers=b.headers)
        assert got.status_code == 404
        assert (await client.delete(f"{S}/{probe}", headers=b.headers)).status_code == 404
        patched = await client.patch(f"{S}/{probe}", json={"content": "x"}, headers=b.headers)
        assert patched.status_code == 404
    body_filters = {k: v for k, v in filters.items() if v}
    for mode in ("vector", "keyword", "hybrid"):
        req = {"query": content, "mode": mode, "filters": body_filters}
        s = await client.post(f"{S}/search", json=req, headers=b.headers)
        assert s.status_code == 200
        assert all(h["memory"]["content"] != content for h in s.json()["results"])
    listing = await client.get(f"{S}/retrieve", headers=b.headers)
    assert all(m["content"] != content for m in listing.json()["memories"])
    exported = await client.get(f"{S}/export", headers=b.headers)
    assert content not in exported.text
    # B storing under the same id makes B's own memory; A's is untouched.
    own = await client.post(f"{S}/store", json={"id": mid, "content": "b's"}, headers=b.headers)
    assert own.status_code == 200 and own.json()["results"][0]["status"] == "created"
    still = await client.get(f"{S}/retrieve", params={"id": mid}, headers=a.headers)
    assert still.json()["memories"][0]["content"] == content
