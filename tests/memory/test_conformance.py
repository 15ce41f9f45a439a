"""One conformance suite, run against every backend through the HTTP API."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.memory.assertions import memory_client
from tests.memory.conftest import Caller, MovableClock, build_app

pytestmark = pytest.mark.asyncio

S = "/v1/memory"


async def store(client: httpx.AsyncClient, who: Caller, *items: dict) -> list[str]:
    r = await client.post(f"{S}/store", json={"memories": list(items)}, headers=who.headers)
    assert r.status_code == 200, r.text
    return r.json()["ids"]


async def search(client: httpx.AsyncClient, who: Caller, **body: object) -> list[dict]:
    r = await client.post(f"{S}/search", json=body, headers=who.headers)
    assert r.status_code == 200, r.text
    return r.json()["results"]


async def retrieve(client: httpx.AsyncClient, who: Caller, **params: object) -> httpx.Response:
    return await client.get(f"{S}/retrieve", params=params, headers=who.headers)


def ids_of(results: list[dict]) -> list[str]:
    return [h["memory"]["id"] for h in results]


async def test_store_single_and_retrieve_by_id(client, make_caller: Callable[..., Caller]):
    me = make_caller()
    r = await client.post(
        f"{S}/store",
        json={
            "content": "the deploy key rotates on Fridays",
            "tags": ["ops"],
            "metadata": {"n": 1},
        },
        headers=me.headers,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["results"][0]["status"] == "created"
    got = await retrieve(client, me, id=body["ids"][0])
    assert got.status_code == 200
    mem = got.json()["memories"][0]
    assert mem["content"] == "the deploy key rotates on Fridays"
    assert mem["tags"] == ["ops"] and mem["metadata"] == {"n": 1}
    assert mem["scope"] == "user" and mem["user"] == "alice" and mem["namespace"] == "default"


async def test_batch_store_and_dedup(client, make_caller):
    me = make_caller()
    ids = await store(client, me, {"content": "alpha fact"}, {"content": "beta fact"},
                      {"content": "alpha fact"})  # fmt: skip
    assert ids[0] == ids[2] and ids[0] != ids[1]
    again = await client.post(f"{S}/store", json={"content": "beta fact"}, headers=me.headers)
    assert again.json()["results"] == [{"id": ids[1], "status": "duplicate"}]
    # Same content in another namespace, or shared at org level, is another scope.
    other_ns = await store(client, me, {"content": "beta fact", "namespace": "work"})
    shared = await store(client, me, {"content": "beta fact", "scope": "org"})
    assert len({ids[1], other_ns[0], shared[0]}) == 3
    listing = (await retrieve(client, me, limit=50)).json()["memories"]
    assert len(listing) == 4


async def test_upsert_by_client_id_keeps_created_at(client, make_caller):
    me = make_caller()
    (mid,) = await store(client, me, {"id": "note-1", "content": "first version"})
    assert mid == "note-1"
    before = (await retrieve(client, me, id=mid)).json()["memories"][0]
    r = await client.post(
        f"{S}/store", json={"id": "note-1", "content": "second version"}, headers=me.headers
    )
    assert r.json()["results"] == [{"id": "note-1", "status": "updated"}]
    after = (await retrieve(client, me, id=mid)).json()["memories"][0]
    assert after["content"] == "second version"
    assert after["created_at"] == before["created_at"]
    assert after["updated_at"] > before["updated_at"]
    hits = await search(client, me, query="second version", mode="keyword")
    assert ids_of(hits) == ["note-1"]
    assert await search(client, me, query="first", mode="keyword") == []


async def test_three_search_modes(client, make_caller):
    me = make_caller()
    docs = [
        "postgres connection pool exhausted under load",
        "the cat sleeps on the warm laptop keyboard",
        "kubernetes pod restarts after memory limit",
        "grandmother's recipe for apple pie with cinnamon",
    ]
    ids = await store(client, me, *({"content": d} for d in docs))
    vec = await search(client, me, query="the cat sleeps on the warm laptop keyboard",
                       mode="vector", top_k=2)  # fmt: skip
    assert ids_of(vec)[0] == ids[1]
    assert vec[0]["score"] == pytest.approx(1.0, abs=1e-3)
    assert vec[0]["score"] >= vec[1]["score"]
    kw = await search(client, me, query="cinnamon apple", mode="keyword")
    assert ids_of(kw) == [ids[3]] and kw[0]["score"] > 0
    hyb = await search(client, me, query="kubernetes memory limit", mode="hybrid", top_k=4)
    assert ids_of(hyb)[0] == ids[2]
    assert hyb[0]["vector_score"] is not None and hyb[0]["keyword_score"] is not None
    scores = [h["score"] for h in hyb]
    assert scores == sorted(scores, reverse=True)
    strict = await search(client, me, query="kubernetes memory limit", mode="vector",
                          min_score=0.99)  # fmt: skip
    assert strict == []


async def test_filters(client, make_caller):
    me = make_caller()
    await store(
        client, me,
        {"content": "note one about billing", "namespace": "work", "tags": ["a", "b"],
         "metadata": {"source": "slack", "prio": 1}},
        {"content": "note two about billing", "namespace": "work", "tags": ["a"],
         "metadata": {"source": "email", "prio": 2}},
        {"content": "note three about billing", "namespace": "home", "tags": ["b"],
         "metadata": {"source": "slack", "prio": 1.0}},
    )  # fmt: skip

    def contents(rows: list[dict]) -> set[str]:
        return {m["content"].split()[1] for m in rows}

    async def listed(**params: object) -> set[str]:
        r = await retrieve(client, me, **params)
        assert r.status_code == 200, r.text
        return contents(r.json()["memories"])

    assert await listed(namespace="work") == {"one", "two"}
    assert await listed(tag=["a", "b"]) == {"one"}
    assert await listed(metadata=json.dumps({"source": "slack"})) == {"one", "three"}
    assert await listed(metadata=json.dumps({"source": "slack", "prio": 1})) == {"one", "three"}
    for mode in ("vector", "keyword", "hybrid"):
        hits = await search(client, me, query="billing note", mode=mode,
                            filters={"namespace": "work", "tags": ["b"]})  # fmt: skip
        assert contents([h["memory"] for h in hits]) == {"one"}, mode
        hits = await search(client, me, query="billing note", mode=mode,
                            filters={"metadata": {"source": "email"}})  # fmt: skip
        assert contents([h["memory"] for h in hits]) == {"two"}, mode
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert await listed(created_after=future) == set()
    assert await listed(created_before=future) == {"one", "two", "three"}


async def test_cursor_pagination(client, make_caller):
    me = make_caller()
    made = await store(client, me, *({"content": f"item number {i}"} for i in range(23)))
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, object] = {"limit": 10}
        if cursor:
            params["cursor"] = cursor
        body = (await retrieve(client, me, **params)).json()
        seen += [m["id"] for m in body["memories"]]
        pages += 1
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert pages == 3
    assert seen == made  # creation order, nothing lost or repeated


async def test_delete_removes_from_everything(client, make_caller):
    me = make_caller()
    keep, gone = await store(client, me, {"content": "zebra migration facts"},
                             {"content": "zebra stripes pattern facts"})  # fmt: skip
    r = await client.delete(f"{S}/{gone}", headers=me.headers)
    assert r.status_code == 200 and r.json() == {"id": gone, "deleted": True}
    assert (await retrieve(client, me, id=gone)).status_code == 404
    for mode in ("vector", "keyword", "hybrid"):
        hits = await search(client, me, query="zebra stripes pattern facts", mode=mode)
        assert gone not in ids_of(hits) and keep in ids_of(hits), mode
    listing = (await retrieve(client, me)).json()["memories"]
    assert [m["id"] for m in listing] == [keep]
    again = await client.delete(f"{S}/{gone}", headers=me.headers)
    assert again.status_code == 404 and again.json()["error"]["code"] == "not_found"


async def test_ttl_expiry(backend, authenticator, make_caller, tmp_path):
    clock = MovableClock()
    app = build_app(backend, authenticator, tmp_path, clock=clock)
    me = make_caller()
    async with memory_client(app, "http://t") as c:
        short, long = await store(c, me, {"content": "ephemeral otter memo", "ttl_seconds": 1},
                                  {"content": "durable otter memo"})  # fmt: skip
        assert (await retrieve(c, me, id=short)).status_code == 200
        clock.advance(1.3)
        assert (await retrieve(c, me, id=short)).status_code == 404
        for mode in ("vector", "keyword", "hybrid"):
            hits = await search(c, me, query="ephemeral otter memo", mode=mode)
            assert ids_of(hits) == [long], mode
        assert [m["id"] for m in (await retrieve(c, me)).json()["memories"]] == [long]
        # Expired content no longer blocks storing it again.
        again = await store(c, me, {"content": "ephemeral otter memo"})
        assert again[0] != short


async def test_update_content_and_metadata(client, make_caller):
    me = make_caller()
    (mid,) = await store(client, me, {"content": "meeting moved to tuesday", "tags": ["cal"]})
    r = await client.patch(
        f"{S}/{mid}",
        json={
            "content": "meeting moved to thursday",
            "metadata": {"room": "b2"},
            "importance": 0.9,
        },
        headers=me.headers,
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["content"] == "meeting moved to thursday" and out["metadata"] == {"room": "b2"}
    assert out["tags"] == ["cal"] and out["importance"] == 0.9
    assert ids_of(await search(client, me, query="thursday", mode="keyword")) == [mid]
    assert await search(client, me, query="tuesday", mode="keyword") == []
    vec = await search(client, me, query="meeting moved to thursday", mode="vector", top_k=1)
    assert vec[0]["score"] == pytest.approx(1.0, abs=1e-3)


async def test_export_import_roundtrip(client, make_caller):
    src, dst = make_caller(), make_caller()
    made = await store(
        client, src,
        {"content": "exported one", "tags": ["x"], "metadata": {"k": "v"}, "namespace": "ns1"},
        {"content": "exported two", "scope": "org"},
        {"id": "fixed-id", "content": "exported three", "ttl_seconds": 3600},
    )  # fmt: skip
    r = await client.get(f"{S}/export", headers=src.headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(x) for x in r.text.splitlines()]
    assert [x["id"] for x in lines] == made
    imp = await client.post(f"{S}/import", content=r.content, headers=dst.headers)
    assert imp.status_code == 200, imp.text
    assert imp.json() == {"created": 3, "updated": 0, "duplicate": 0, "expired": 0}
    back = (await retrieve(client, dst)).json()["memories"]
    strip = ("user", "updated_at")
    assert [{k: v for k, v in m.items() if k not in strip} for m in back] == [
        {k: v for k, v in m.items() if k not in strip}
        for m in (await retrieve(client, src)).json()["memories"]
    ]
    assert ids_of(await search(client, dst, query="three", mode="keyword")) == ["fixed-id"]
    # Importing the same file again changes nothing and says so: every row is a duplicate,
    # nothing is written (updated_at stays), nothing is stored twice.
    imp2 = await client.post(f"{S}/import", content=r.content, headers=dst.headers)
    assert imp2.json() == {"created": 0, "updated": 0, "duplicate": 3, "expired": 0}
    again = (await retrieve(client, dst)).json()["memories"]
    assert [m["updated_at"] for m in again] == [m["updated_at"] for m in back]
    # one edited line is the one row updated
    edited = [dict(x, tags=["y"]) if x["id"] == made[0] else x for x in lines]
    body = "\n".join(json.dumps(x) for x in edited).encode()
    imp3 = await client.post(f"{S}/import", content=body, headers=dst.headers)
    assert imp3.json() == {"created": 0, "updated": 1, "duplicate": 2, "expired": 0}
    assert len((await retrieve(client, dst)).json()["memories"]) == 3


async def test_org_shared_and_private_memories(client, make_caller):
    alice = make_caller(user="alice")
    bob = make_caller(org=alice.org, user="bob")
    private, shared = await store(client, alice, {"content": "alice private diary"},
                                  {"content": "team wiki page", "scope": "org"})  # fmt: skip
    assert (await retrieve(client, bob, id=shared)).json()["memories"][0]["scope"] == "org"
    assert (await retrieve(client, bob, id=private)).status_code == 404
    assert (await client.delete(f"{S}/{private}", headers=bob.headers)).status_code == 404
    r = await client.patch(f"{S}/{private}", json={"content": "hacked"}, headers=bob.headers)
    assert r.status_code == 404
    hits = await search(client, bob, query="alice private diary team wiki", mode="hybrid")
    assert ids_of(hits) == [shared]
    assert [m["id"] for m in (await retrieve(client, bob)).json()["memories"]] == [shared]
    # Bob cannot take over Alice's private id by upserting it.
    r = await client.post(f"{S}/store", json={"id": private, "content": "x"}, headers=bob.headers)
    assert r.status_code == 409 and r.json()["error"]["code"] == "id_conflict"
    only_org = await retrieve(client, alice, scope="org")
    assert [m["id"] for m in only_org.json()["memories"]] == [shared]


async def test_capabilities(client, make_caller, backend):
    r = await client.get(f"{S}/capabilities", headers=make_caller().headers)
    assert r.status_code == 200
    caps = r.json()
    assert caps["backend"] == backend.name
    assert caps["search_modes"] == ["vector", "keyword", "hybrid"]
    assert caps["embedding"] == {"model": "deterministic-hash-384", "dimensions": 384}
    assert caps["limits"]["max_body_bytes"] == 1_048_576
    assert {"dedup", "ttl", "export_jsonl"} <= set(caps["features"])


async def test_tenant_limits(backend, authenticator, make_caller, tmp_path):
    app = build_app(backend, authenticator, tmp_path, tenant_max_memories=3, tenant_max_bytes=60)
    me = make_caller()
    async with memory_client(app, "http://t") as c:
        ok = await c.post(f"{S}/store", json={"memories": [{"content": f"m{i}"} for i in range(3)]},
                          headers=me.headers)  # fmt: skip
        assert ok.status_code == 200
        r = await c.post(f"{S}/store", json={"content": "one too many"}, headers=me.headers)
        assert r.status_code == 403
        err = r.json()["error"]
        assert err["code"] == "tenant_limit_reached" and err["details"]["used_memories"] == 3
        # Deleting makes room again; bytes are limited too.
        mid = ok.json()["ids"][0]
        assert (await c.delete(f"{S}/{mid}", headers=me.headers)).status_code == 200
        big = await c.post(f"{S}/store", json={"content": "x" * 61}, headers=me.headers)
        assert big.status_code == 403
        fits = await c.post(f"{S}/store", json={"content": "small"}, headers=me.headers)
        assert fits.status_code == 200
        # Another tenant is unaffected.
        other = make_caller()
        r = await c.post(f"{S}/store", json={"content": "fresh tenant"}, headers=other.headers)
        assert r.status_code == 200


async def test_keyword_queries_of_stopwords_and_symbols(client, make_caller):
    me = make_caller()
    (mid,) = await store(client, me, {"content": "the answer is forty two"})
    for query in ("the", "!!! ???", "a the of", 'forty" OR 1=1 --', "@content:{x} | *"):
        for mode in ("keyword", "hybrid", "vector"):
            r = await client.post(f"{S}/search", json={"query": query, "mode": mode},
                                  headers=me.headers)  # fmt: skip
            assert r.status_code == 200, (query, mode, r.text)
            assert all(h["memory"]["id"] == mid for h in r.json()["results"])
    assert ids_of(await search(client, me, query='forty" OR 1=1 --', mode="keyword")) == [mid]


async def test_keyword_filter_finds_matches_ranked_below_many_others(client, make_caller):
    me = make_caller()
    loud = [{"content": f"apple apple apple apple pie {i}", "namespace": "loud"} for i in range(80)]
    quiet = [{"content": f"an apple among many words here {i}", "namespace": "quiet"}
             for i in range(3)]  # fmt: skip
    await store(client, me, *loud)
    want = set(await store(client, me, *quiet))
    for mode in ("keyword", "hybrid"):
        hits = await search(client, me, query="apple", mode=mode, top_k=3,
                            filters={"namespace": "quiet"})  # fmt: skip
        assert set(ids_of(hits)) == want, mode
