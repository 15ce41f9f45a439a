"""Erasure on request on every memory backend: a user's memories, then a whole organization's,
leave storage, indexes and caches; searches right after find nothing; others keep theirs."""

from __future__ import annotations

import secrets
import uuid
from pathlib import Path
from typing import Any

import httpx

from memory_service.backends.base import MemoryBackend
from memory_service.erasure import ERASE_PATH, hashed_id
from tests.memory.assertions import memory_client
from tests.memory.conftest import Caller, build_app


async def _store(client: httpx.AsyncClient, caller: Caller, *contents: str, scope: str = "user"):
    response = await client.post(
        "/v1/memory/store",
        json={"memories": [{"content": c, "scope": scope} for c in contents]},
        headers=caller.headers,
    )
    assert response.status_code in (200, 201), response.text
    return response.json()["ids"]


async def _found(client: httpx.AsyncClient, caller: Caller, word: str) -> set[str]:
    """Ids a caller finds for ``word`` by keyword, by vector and by listing."""
    found: set[str] = set()
    for mode in ("keyword", "vector", "hybrid"):
        response = await client.post(
            "/v1/memory/search",
            json={"query": word, "mode": mode, "top_k": 50},
            headers=caller.headers,
        )
        assert response.status_code == 200, response.text
        found |= {hit["memory"]["id"] for hit in response.json()["results"]}
    listed = await client.get("/v1/memory/retrieve", headers=caller.headers)
    found |= {m["id"] for m in listed.json()["memories"]}
    return found


async def _traces(backend: MemoryBackend, tenant: str, word: str) -> int:
    """Where each engine could still hold erased text: raw SQLite pages and WAL (FTS5
    segments included), Lance tables and versions on disk, Redis keys of the tenant."""
    if backend.name == "sqlite":
        path = Path(backend.path)  # type: ignore[attr-defined]
        files = [p for p in path.parent.glob(path.name + "*") if p.is_file()]
        return sum(p.read_bytes().count(word.encode()) for p in files)
    if backend.name == "lancedb":
        root = Path(backend.path)  # type: ignore[attr-defined]
        table = root / (backend.table_name(tenant) + ".lance")  # type: ignore[attr-defined]
        if not table.exists():
            return 0
        return sum(p.read_bytes().count(word.encode()) for p in table.rglob("*") if p.is_file())
    if backend.name == "postgres":
        # live rows only: dead tuples stay in the pages until autovacuum (README says so)
        async with backend.tenant_transaction(tenant) as conn:  # type: ignore[attr-defined]
            cur = await conn.execute(
                "SELECT count(*) FROM memories WHERE content LIKE %s", (f"%{word}%",)
            )
            return int((await cur.fetchone())[0])
    redis: Any = backend.r  # type: ignore[attr-defined]
    hits = 0
    async for key in redis.scan_iter(match=backend._prefix(tenant) + "*"):  # type: ignore[attr-defined]
        hits += (await redis.hget(key, "content") or b"").count(word.encode())
    return hits


async def test_erase_a_user_then_the_organization(
    backend: MemoryBackend, authenticator: Any, make_caller: Any, tmp_path: Path
) -> None:
    app = build_app(backend, authenticator, tmp_path)
    org = f"org-{uuid.uuid4().hex[:10]}"
    word = f"zanzibar{secrets.token_hex(4)}"
    their_word = f"kilimanjaro{secrets.token_hex(4)}"  # the raw scans must not see theirs
    bob, alice = make_caller(org, "bob"), make_caller(org, "alice")
    admin = make_caller(org, "root")
    admin.principal = admin.principal.model_copy(update={"is_org_admin": True})
    elsewhere = make_caller(user="bob")  # same user name, another organization
    async with memory_client(app) as client:
        bobs = await _store(client, bob, *(f"{word} bob's note {n}" for n in range(3)))
        alices = await _store(client, alice, f"{word} alice's note", f"{word} alice again")
        shared = await _store(client, alice, f"{word} for everyone", scope="org")
        theirs = await _store(client, elsewhere, f"{their_word} another tenant's")
        assert set(bobs) <= await _found(client, bob, word)

        # bob may erase himself; erasing alice, or everyone, takes an org admin
        for body in ({"user": "alice"}, {}):
            refused = await client.post(ERASE_PATH, json=body, headers=bob.headers)
            assert refused.status_code == 403, refused.text
            assert refused.json()["error"]["code"] == "forbidden"
        bad = await client.post(ERASE_PATH, json={"user": 7}, headers=bob.headers)
        assert bad.status_code == 422 and bad.json()["error"]["code"]
        erased = await client.post(ERASE_PATH, json={"user": "bob"}, headers=bob.headers)
        assert erased.status_code == 200, erased.text
        receipt = erased.json()
        assert receipt["memories"] == 3 and receipt["user"] == "bob"
        assert receipt["memory_ids_sha256"] == sorted(hashed_id(i) for i in bobs)
        assert not set(bobs) & await _found(client, bob, word)
        assert await _found(client, alice, word) >= set(alices + shared)
        # bob's text is gone from the engine's files too; alice's is still there
        assert await _traces(backend, org, "bob's note") == 0
        assert await _traces(backend, org, "alice's note") > 0

        # the organization is offboarded: everything of it goes, the other tenant stays
        whole = await client.post(ERASE_PATH, json={}, headers=admin.headers)
        assert whole.status_code == 200, whole.text
        assert whole.json()["memories"] == 3 and whole.json()["user"] is None
        for caller in (alice, bob, admin):
            assert await _found(client, caller, word) == set()
        assert await _found(client, elsewhere, their_word) == set(theirs)
        assert await _traces(backend, org, word) == 0
        # erasing again finds nothing: an idempotent receipt of zero
        again = await client.post(ERASE_PATH, json={}, headers=admin.headers)
        assert again.json()["memories"] == 0
