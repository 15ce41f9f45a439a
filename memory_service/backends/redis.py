"""Redis backend: one RediSearch index per tenant (HNSW vectors, TAG and TEXT fields).

Memories are hashes under ``hm:<tenant hex>:<id>``; the tenant's index covers exactly its
prefix, so a query can never reach another tenant and its cost follows the tenant's size.
TAG values (user, namespace, tags, metadata pairs) are stored hex-encoded, which leaves
nothing to escape in query strings; the readable values live in the ``doc`` JSON field.
Expiring memories also get a Redis key expiry, so storage is reclaimed without a sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import zlib
from typing import Any

import numpy as np
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from hanzo_contract.redis_keys import MEMORY_PREFIX
from memory_service.backends.base import (
    NEVER,
    MemoryBackend,
    Query,
    Record,
    Usage,
    keyword_terms,
    opened,
)
from memory_service.bounds import readable_metadata

_FIELDS = ("id", "user", "namespace", "content", "chash", "created_at", "updated_at",
           "expires_at", "doc")  # fmt: skip


_CHUNK = 100
#: HNSW build parameters of a new tenant's index (an existing index keeps the ones it was
#: created with). RediSearch inserts each vector into the graph on Valkey's one thread as
#: the HSET lands, and that insert is nearly all of a store's server time: see
#: ``scripts/bench_redis_store.py --breakdown`` and the README for the measured trade.
M = 16
EF_CONSTRUCTION = 64
#: a batch goes out as this many pipelines at once (on separate connections), so the
#: client encodes one while Valkey indexes another; a key always falls in the same one
PIPELINES = 4


def _hex(value: str) -> str:
    return value.encode().hex() or "00"


def _glob(literal: str) -> str:
    """``literal`` as a SCAN MATCH pattern that matches only itself."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in literal)


def _unhex(stored: bytes) -> str:
    """Inverse of :func:`_hex` (``00`` stands for the empty string)."""
    return "" if stored == b"00" else bytes.fromhex(stored.decode()).decode()


class RedisBackend(MemoryBackend):
    name = "redis"

    def __init__(
        self,
        url: str,
        dim: int,
        ef_runtime: int = 200,
        ef_construction: int = EF_CONSTRUCTION,
        m: int = M,
        pipelines: int = PIPELINES,
    ) -> None:
        self.url = url
        self.dim = dim
        self.ef_runtime = ef_runtime
        self.ef_construction = ef_construction
        self.m = m
        self.pipelines = pipelines
        self._r: aioredis.Redis | None = None
        self._indexed: set[str] = set()

    @property
    def r(self) -> aioredis.Redis:
        return opened(self._r)

    async def open(self) -> None:
        self._r = aioredis.from_url(self.url, decode_responses=False, protocol=2, socket_timeout=60)
        await self._r.ping()

    async def close(self) -> None:
        if self._r is not None:
            await self._r.aclose()
            self._r = None

    @staticmethod
    def _prefix(tenant: str) -> str:
        return f"{MEMORY_PREFIX}{_hex(tenant)}:"

    @staticmethod
    def _index(tenant: str) -> str:
        return f"hmidx:{_hex(tenant)}"

    def schema(self) -> list[str]:
        """The ``FT.CREATE ... SCHEMA`` arguments of a tenant's index."""
        return [
            "user", "TAG", "namespace", "TAG", "chash", "TAG",
            "tags", "TAG", "SEPARATOR", ",", "meta", "TAG", "SEPARATOR", ",",
            "content", "TEXT",
            "created_at", "NUMERIC", "SORTABLE", "expires_at", "NUMERIC", "size", "NUMERIC",
            "vec", "VECTOR", "HNSW", "10", "TYPE", "FLOAT32", "DIM", str(self.dim),
            "DISTANCE_METRIC", "COSINE", "M", str(self.m),
            "EF_CONSTRUCTION", str(self.ef_construction),
        ]  # fmt: skip

    async def _ensure_index(self, tenant: str) -> None:
        if tenant in self._indexed:
            return
        try:
            await self.r.execute_command(
                "FT.CREATE", self._index(tenant), "ON", "HASH",
                "PREFIX", "1", self._prefix(tenant), "SCHEMA", *self.schema(),
            )  # fmt: skip
        except ResponseError as exc:
            if "already exists" not in str(exc).lower():
                raise
        self._indexed.add(tenant)

    def _mapping(self, r: Record) -> dict[str, Any]:
        doc = {"metadata": r.metadata, "tags": r.tags, "importance": r.importance}
        return {
            "id": r.id,
            "user": _hex(r.user),
            "namespace": _hex(r.namespace),
            "content": r.content,
            "chash": r.content_hash,
            "tags": ",".join(_hex(t) for t in r.tags),
            "meta": ",".join(_hex(kv) for kv in r.meta_kv),
            "created_at": r.created_at,
            "updated_at": r.updated_at,
            "expires_at": r.expires_at,
            "size": r.size,
            "doc": json.dumps(doc),
            "vec": np.asarray(r.vector, dtype=np.float32).tobytes(),
        }

    @staticmethod
    def _record(tenant: str, h: dict[bytes, bytes]) -> Record:
        try:
            doc = json.loads(h[b"doc"])
        except (ValueError, RecursionError):  # written before metadata was bounded
            tags = [_unhex(t.encode()) for t in h.get(b"tags", b"").decode().split(",") if t]
            doc = {"metadata": b"", "tags": tags, "importance": 0.0}
        return Record(
            tenant=tenant, id=h[b"id"].decode(), user=_unhex(h[b"user"]),
            namespace=_unhex(h[b"namespace"]),
            content=h[b"content"].decode(), content_hash=h[b"chash"].decode(),
            metadata=readable_metadata(doc["metadata"]), tags=doc["tags"],
            importance=doc["importance"],
            created_at=int(h[b"created_at"]), updated_at=int(h[b"updated_at"]),
            expires_at=int(h[b"expires_at"]),
            vector=np.frombuffer(h[b"vec"], dtype=np.float32).copy() if b"vec" in h
            else np.zeros(0, dtype=np.float32),
        )  # fmt: skip

    async def upsert(self, records: list[Record]) -> None:
        for tenant in {r.tenant for r in records}:
            await self._ensure_index(tenant)
        # Pipelined outside MULTI/EXEC: each HSET writes every field of the hash (so a
        # replaced memory keeps no stale one) and is indexed as it lands, so the store is
        # searchable once acknowledged; a memory that no longer expires loses any expiry its
        # predecessor set. The batch is split by key (crc32), so two writes of one key in a
        # batch stay in order on one connection, and the parts are sent concurrently.
        parts: list[list[Record]] = [[] for _ in range(max(1, self.pipelines))]
        for r in records:
            parts[zlib.crc32(r.id.encode()) % len(parts)].append(r)
        await asyncio.gather(*(self._send(part) for part in parts if part))

    async def _send(self, records: list[Record]) -> None:
        """One pipeline, one round trip: the HSET and expiry of each memory in order."""
        pipe = self.r.pipeline(transaction=False)
        for r in records:
            key = self._prefix(r.tenant) + r.id
            pipe.hset(key, mapping=self._mapping(r))
            if r.expires_at != NEVER:
                pipe.pexpireat(key, max(r.expires_at // 1000, 1))
            else:
                pipe.persist(key)
        await pipe.execute()

    async def get(self, tenant: str, ids: list[str]) -> list[Record]:
        if not ids:
            return []
        pipe = self.r.pipeline(transaction=False)
        for i in ids:
            pipe.hgetall(self._prefix(tenant) + i)
        found = await pipe.execute()
        return [self._record(tenant, h) for h in found if h]

    def _filter(self, q: Query) -> str:
        users = "|".join(_hex(u) for u in q.users)
        parts = [f"@user:{{{users}}}", f"@expires_at:[({int(q.now)} +inf]"]
        if q.namespace is not None:
            parts.append(f"@namespace:{{{_hex(q.namespace)}}}")
        if q.created_after is not None:
            parts.append(f"@created_at:[({int(q.created_after)} +inf]")
        if q.created_before is not None:
            parts.append(f"@created_at:[-inf ({int(q.created_before)}]")
        parts += [f"@tags:{{{_hex(t)}}}" for t in q.tags]
        parts += [f"@meta:{{{_hex(kv)}}}" for kv in q.meta_kv]
        return " ".join(parts)

    async def _search(self, tenant: str, *args: Any) -> list[tuple[dict[bytes, bytes], float]]:
        """Run FT.SEARCH with WITHSCORES-free output: returns (fields, score-field) pairs."""
        if tenant not in self._indexed:
            try:
                await self.r.execute_command("FT.INFO", self._index(tenant))
                self._indexed.add(tenant)
            except ResponseError:
                return []  # no memory was ever stored for this tenant
        raw = await self.r.execute_command("FT.SEARCH", self._index(tenant), *args)
        out = []
        for i in range(1, len(raw), 2):
            fields = raw[i + 1]
            h = {fields[j]: fields[j + 1] for j in range(0, len(fields), 2)}
            out.append((h, 0.0))
        return out

    async def live_with_hashes(
        self, tenant: str, hashes: list[str], now: int, cap: int
    ) -> list[tuple[str, str, str, str]]:
        query = f"@chash:{{{'|'.join(hashes)}}} @expires_at:[({int(now)} +inf]"
        rows = await self._search(
            tenant, query, "RETURN", "4", "id", "user", "namespace", "chash",
            "LIMIT", "0", str(cap), "DIALECT", "2",
        )  # fmt: skip
        return [
            (_unhex(h[b"user"]), _unhex(h[b"namespace"]), h[b"chash"].decode(), h[b"id"].decode())
            for h, _ in rows
        ]

    async def delete(self, tenant: str, ids: list[str]) -> int:
        if not ids:
            return 0
        return int(await self.r.delete(*(self._prefix(tenant) + i for i in ids)))

    async def erase(self, tenant: str, user: str | None) -> list[str]:
        # SCAN, not FT.SEARCH: no result cap, and expired-but-unreaped keys are found too
        prefix = self._prefix(tenant)
        keys = [key async for key in self.r.scan_iter(match=_glob(prefix) + "*", count=1000)]
        if user is not None:
            pipe = self.r.pipeline(transaction=False)
            for key in keys:
                pipe.hget(key, "user")
            owners = await pipe.execute()
            mine = _hex(user).encode()
            keys = [key for key, owner in zip(keys, owners, strict=True) if owner == mine]
        ids = [key[len(prefix.encode()) :].decode() for key in keys]
        for start in range(0, len(keys), _CHUNK):
            await self.r.delete(*keys[start : start + _CHUNK])
        if user is None:
            # the tenant's search index goes too (its documents are gone already)
            with contextlib.suppress(ResponseError):
                await self.r.execute_command("FT.DROPINDEX", self._index(tenant))
            self._indexed.discard(tenant)
        return ids

    async def list(self, q: Query, after: tuple[int, str] | None, limit: int) -> list[Record]:
        base = self._filter(q)
        if after is not None:
            base += f" @created_at:[{int(after[0])} +inf]"
        out: list[Record] = []
        offset, page = 0, limit + 16
        while len(out) < limit:
            rows = await self._search(
                q.tenant, base, "RETURN", str(len(_FIELDS)), *_FIELDS,
                "SORTBY", "created_at", "ASC", "LIMIT", str(offset), str(page), "DIALECT", "2",
            )  # fmt: skip
            recs = sorted((self._record(q.tenant, h) for h, _ in rows),
                          key=lambda r: (r.created_at, r.id))  # fmt: skip
            out += [r for r in recs if after is None or (r.created_at, r.id) > after]
            if len(rows) < page:
                break
            offset += page
        out.sort(key=lambda r: (r.created_at, r.id))
        return out[:limit]

    async def vector_search(
        self, q: Query, vector: np.ndarray, k: int
    ) -> list[tuple[Record, float]]:
        blob = np.asarray(vector, dtype=np.float32).tobytes()
        # With only the visibility filter (which admits most of a tenant), RediSearch's own
        # choice is often a brute-force scan (8 ms at 20k, 40 ms at 100k here); walking the
        # HNSW graph in batches takes under 2 ms. Narrower filters keep RediSearch's choice.
        narrow = (
            q.scope or q.namespace or q.tags or q.metadata or q.created_after or (q.created_before)
        )
        policy = "" if narrow else "HYBRID_POLICY BATCHES "
        query = (
            f"({self._filter(q)})=>[KNN {int(k)} @vec $B {policy}"
            f"EF_RUNTIME {self.ef_runtime} AS dist]"
        )
        rows = await self._search(
            q.tenant, query, "PARAMS", "2", "B", blob,
            "RETURN", str(len(_FIELDS) + 1), *_FIELDS, "dist",
            "SORTBY", "dist", "ASC", "LIMIT", "0", str(k), "DIALECT", "2",
        )  # fmt: skip
        return [(self._record(q.tenant, h), 1.0 - float(h[b"dist"])) for h, _ in rows]

    async def keyword_search(self, q: Query, text: str, k: int) -> list[tuple[Record, float]]:
        terms = keyword_terms(text)
        if not terms:
            return []
        if q.tenant not in self._indexed:
            rows = await self._search(q.tenant, "*", "LIMIT", "0", "0")
            if q.tenant not in self._indexed:
                return []
        query = f"@content:({'|'.join(terms)}) {self._filter(q)}"
        raw = await self.r.execute_command(
            "FT.SEARCH", self._index(q.tenant), query, "WITHSCORES", "SCORER", "BM25",
            "RETURN", str(len(_FIELDS)), *_FIELDS, "LIMIT", "0", str(k), "DIALECT", "2",
        )  # fmt: skip
        rows = []
        for i in range(1, len(raw), 3):
            fields = raw[i + 2]
            h = {fields[j]: fields[j + 1] for j in range(0, len(fields), 2)}
            rows.append((self._record(q.tenant, h), float(raw[i + 1])))
        return rows

    async def usage(self, tenant: str) -> Usage:
        if tenant not in self._indexed:
            await self._search(tenant, "*", "LIMIT", "0", "0")
            if tenant not in self._indexed:
                return Usage(0, 0)
        raw = await self.r.execute_command(
            "FT.AGGREGATE", self._index(tenant), "*", "LOAD", "1", "@size",
            "GROUPBY", "0", "REDUCE", "COUNT", "0", "AS", "n",
            "REDUCE", "SUM", "1", "@size", "AS", "b", "DIALECT", "2",
        )  # fmt: skip
        if len(raw) < 2:
            return Usage(0, 0)
        row = dict(zip(raw[1][::2], raw[1][1::2], strict=True))
        return Usage(count=int(float(row[b"n"])), bytes=int(float(row.get(b"b", 0) or 0)))

    async def purge_expired(self, tenant: str, now: int) -> int:
        rows = await self._search(
            tenant, f"@expires_at:[-inf {int(now)}]", "RETURN", "1", "id",
            "LIMIT", "0", "10000", "DIALECT", "2",
        )  # fmt: skip
        ids = [h[b"id"].decode() for h, _ in rows]
        return await self.delete(tenant, ids)
