"""Redis batch store: a batch is a few concurrent round trips, and a replaced memory is the
new one whole.

The batch is pipelined without MULTI/EXEC and without deleting the old hash first, so
these pin what the delete used to guarantee: a replacement that no longer expires loses
its predecessor's key expiry, and no field of the old memory survives. The batch is split
into concurrent pipelines by key, so two writes of one key in a batch keep their order.
"""

from __future__ import annotations

import numpy as np

from memory_service.backends.base import NEVER, Query, Record
from memory_service.backends.redis import RedisBackend

DIM = 8


def record(i: int, content: str, expires_at: int = NEVER, tags: list[str] | None = None) -> Record:
    v = np.zeros(DIM, dtype=np.float32)
    v[i % DIM] = 1.0
    return Record(
        tenant="rs", id=f"m{i}", user="u", namespace="default", content=content,
        content_hash=f"h{i}-{content}", metadata={}, tags=tags or [], importance=0.5,
        created_at=1000 + i, updated_at=1000 + i, expires_at=expires_at, vector=v,
    )  # fmt: skip


async def test_batch_is_few_round_trips_and_a_replacement_drops_the_old_expiry(valkey):
    backend = RedisBackend(valkey.url, DIM)
    await backend.open()
    try:
        await backend.erase("rs", None)
        executed: list[int] = []
        pipeline = backend.r.pipeline

        def counting(*args, **kwargs):
            pipe = pipeline(*args, **kwargs)
            execute = pipe.execute

            async def run(*a, **kw):
                executed.append(len(pipe.command_stack))
                return await execute(*a, **kw)

            pipe.execute = run
            return pipe

        backend.r.pipeline = counting  # type: ignore[method-assign]
        far = 4_102_444_800_000_000  # 2100-01-01 in microseconds
        await backend.upsert([record(i, f"first {i}", far, tags=["old"]) for i in range(300)])
        # 300 memories: each of the backend's pipelines sent once, every command in one
        assert 1 < len(executed) <= backend.pipelines and sum(executed) == 600
        key = backend._prefix("rs") + "m7"
        assert await backend.r.pttl(key) > 0

        await backend.upsert([record(7, "second 7")])
        assert await backend.r.pttl(key) == -1  # no expiry left behind
        (got,) = await backend.get("rs", ["m7"])
        assert got.content == "second 7" and got.tags == [] and got.expires_at == NEVER
        q = Query(tenant="rs", user="u", now=2000, tags=["old"])
        assert "m7" not in {r.id for r, _ in await backend.keyword_search(q, "second", 300)}
    finally:
        await backend.erase("rs", None)
        await backend.close()


async def test_two_writes_of_one_key_in_a_batch_keep_their_order(valkey):
    backend = RedisBackend(valkey.url, DIM)
    await backend.open()
    try:
        await backend.erase("rs2", None)
        batch = [record(i, f"first {i}") for i in range(64)]
        batch += [record(i, f"second {i}") for i in reversed(range(64))]
        for r in batch:
            r.tenant = "rs2"
        await backend.upsert(batch)
        got = await backend.get("rs2", [f"m{i}" for i in range(64)])
        assert sorted(r.content for r in got) == sorted(f"second {i}" for i in range(64))
        # and search sees the batch as soon as upsert returns (read-your-write)
        q = Query(tenant="rs2", user="u", now=2000)
        hits = await backend.keyword_search(q, "second", 100)
        assert len(hits) == 64
        assert not await backend.keyword_search(q, "first", 100)
    finally:
        await backend.erase("rs2", None)
        await backend.close()
