"""What the API does, independent of HTTP: dedup, visibility, limits, embedding, fusion.

Every method takes the caller's :class:`Principal`; the tenant and user come only from it.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import numpy as np

from hanzo_contract.principal import Principal
from memory_service.backends.base import NEVER, SHARED, MemoryBackend, Query, Record
from memory_service.backends.sealed import SealedBackend
from memory_service.bounds import (
    MAX_BODY_DEPTH,
    MAX_METADATA_BYTES,
    MAX_METADATA_DEPTH,
    MAX_METADATA_KEYS,
)
from memory_service.clock import Clock, expiry_from_us, from_us, now_us, to_us
from memory_service.embeddings.base import Embedder, EmbeddingError, normalize
from memory_service.erasure import ErasureReceipt, ErasureRequest, erase
from memory_service.errors import ApiError, not_found
from memory_service.models import (
    Capabilities,
    Filters,
    ImportLine,
    MemoryIn,
    MemoryOut,
    SearchHit,
    SearchRequest,
    StoreItemResult,
    UpdateRequest,
)
from memory_service.settings import MemorySettings

RRF_K = 60


def content_hash(content: str) -> str:
    return hashlib.sha256(content.encode()).hexdigest()


def new_id() -> str:
    return "m_" + secrets.token_hex(12)


def to_out(r: Record) -> MemoryOut:
    return MemoryOut(
        id=r.id,
        content=r.content,
        namespace=r.namespace,
        scope="org" if r.user == SHARED else "user",
        user=None if r.user == SHARED else r.user,
        metadata=r.metadata,
        tags=r.tags,
        importance=r.importance,
        created_at=from_us(r.created_at),
        updated_at=from_us(r.updated_at),
        expires_at=expiry_from_us(r.expires_at),
        sensitive=r.sensitive,
    )


def _unchanged(old: Record, new: Record) -> bool:
    """Whether an upsert by id would change nothing a reader can see (times aside)."""
    return (
        old.user == new.user
        and old.namespace == new.namespace
        and old.content_hash == new.content_hash
        and old.metadata == new.metadata
        and old.tags == new.tags
        and old.importance == new.importance
        and old.expires_at == new.expires_at
        and old.sensitive == new.sensitive
    )


#: tenant write locks (tenants share a stripe: contention, never a wrong answer)
_WRITE_STRIPES = 64


@dataclass
class _StorePlan:
    """What a store writes: each item's result (None: not decided), the records to write
    (and whether each still needs an embedding), the rows their ids held."""

    results: list[StoreItemResult | None]
    pending: list[tuple[Record, bool]]
    existing: dict[str, Record]


class MemoryService:
    def __init__(
        self,
        backend: MemoryBackend,
        embedder: Embedder,
        settings: MemorySettings,
        clock: Clock = now_us,
    ) -> None:
        self.backend = backend
        self.embedder = embedder
        self.settings = settings
        self.clock = clock
        self._writes = [asyncio.Lock() for _ in range(_WRITE_STRIPES)]

    def writing(self, tenant: str) -> asyncio.Lock:
        """Held while a write reads what it depends on and writes (not while it embeds):
        two stores of one content, two users' stores of one id, an update and a delete
        or an erasure of its memory, each sees the other's result, never the state before
        it. One lock per stripe of tenants, in this process (replicas on PostgreSQL
        share no lock: see the README's note)."""
        return self._writes[hash(tenant) % _WRITE_STRIPES]

    # -- helpers -------------------------------------------------------------------------

    def visible(self, p: Principal, r: Record, now: int) -> bool:
        return r.tenant == p.organization and r.user in (p.user, SHARED) and r.expires_at > now

    def query(self, p: Principal, f: Filters, now: int) -> Query:
        return Query(
            tenant=p.organization,
            user=p.user,
            now=now,
            namespace=f.namespace,
            scope=f.scope,
            tags=tuple(f.tags),
            metadata=dict(f.metadata),
            created_after=to_us(f.created_after) if f.created_after else None,
            created_before=to_us(f.created_before) if f.created_before else None,
        )

    def _check_vector(self, values: list[float]) -> np.ndarray:
        if len(values) != self.embedder.dim:
            raise ApiError(
                422, "dimension_mismatch",
                f"embedding has {len(values)} dimensions; this collection uses "
                f"{self.embedder.dim}",
                {"expected": self.embedder.dim, "got": len(values)},
            )  # fmt: skip
        row = np.asarray([values], dtype=np.float32)
        if not np.isfinite(row).all() or not np.any(row):
            raise ApiError(422, "invalid_embedding", "embedding must be finite and non-zero")
        return normalize(row)[0]

    async def embed_texts(self, texts: list[str]) -> np.ndarray:
        """The memory API's own vectors for ``texts`` (served by ``/v1/embeddings``)."""
        return await self._embed(texts)

    async def _embed(self, texts: list[str]) -> np.ndarray:
        try:
            rows = await self.embedder.embed(texts)
        except EmbeddingError as exc:
            raise ApiError(502, "embedding_unavailable", str(exc)) from None
        if rows.shape != (len(texts), self.embedder.dim):
            raise ApiError(502, "embedding_unavailable", "embedder returned the wrong shape")
        return rows

    async def _embed_query(self, text: str) -> np.ndarray:
        try:
            row = await self.embedder.embed_query(text)
        except EmbeddingError as exc:
            raise ApiError(502, "embedding_unavailable", str(exc)) from None
        if row.shape != (self.embedder.dim,):
            raise ApiError(502, "embedding_unavailable", "embedder returned the wrong shape")
        return row

    def _expiry(self, ttl: int | None, at: object, now: int) -> int:
        if ttl is not None:
            return now + ttl * 1_000_000
        if at is not None:
            value = to_us(at)  # type: ignore[arg-type]
            if value <= now:
                raise ApiError(422, "invalid_expiry", "expires_at must be in the future")
            return value
        return NEVER

    def _check_content(self, content: str) -> None:
        if len(content) > self.settings.max_content_chars:
            raise ApiError(
                413, "content_too_large",
                f"content exceeds {self.settings.max_content_chars} characters",
            )  # fmt: skip

    # -- store ---------------------------------------------------------------------------

    async def store(self, p: Principal, items: list[MemoryIn]) -> list[StoreItemResult]:
        if len(items) > self.settings.max_batch:
            raise ApiError(
                413, "batch_too_large", f"at most {self.settings.max_batch} memories per request"
            )
        now = self.clock()
        tenant = p.organization
        client_ids = [m.id for m in items if m.id]
        if len(set(client_ids)) != len(client_ids):
            raise ApiError(422, "duplicate_id", "the same id appears twice in one request")
        # planned and embedded outside the tenant's write lock, then planned again under
        # it: what another write stored meanwhile decides, the embeddings are reused
        vectors = await self._embedded(await self._plan_store(p, items, now), {})
        async with self.writing(tenant):
            plan = await self._plan_store(p, items, now)
            vectors = await self._embedded(plan, vectors)
            records = [rec for rec, _ in plan.pending]
            for rec, needs in plan.pending:
                if needs:
                    rec.vector = vectors[rec.content]
            await self._check_limits(p, records, plan.existing)
            await self.backend.upsert(records)
        return [r for r in plan.results if r is not None]

    async def _plan_store(self, p: Principal, items: list[MemoryIn], now: int) -> _StorePlan:
        """What storing ``items`` writes, given what the tenant holds now."""
        tenant = p.organization
        existing = {r.id: r for r in await self.backend.get(tenant, [m.id for m in items if m.id])}
        scope_keys = [
            (p.user if m.scope == "user" else SHARED, m.namespace, content_hash(m.content))
            for m in items
        ]
        stored = await self.backend.find_duplicates(
            tenant, [key for m, key in zip(items, scope_keys, strict=True) if m.id is None], now
        )

        results: list[StoreItemResult | None] = [None] * len(items)
        pending: list[tuple[Record, bool]] = []  # (record, still needs an embedding)
        seen: dict[tuple[str, str, str], str] = {}
        for i, m in enumerate(items):
            self._check_content(m.content)
            if m.sensitive and not isinstance(self.backend, SealedBackend):
                raise ApiError(
                    422,
                    "sealing_unavailable",
                    "sensitive memories need a sealing key (HANZO_MEMORY_SEALING_KEY_FILE)",
                )
            vec = self._check_vector(m.embedding) if m.embedding is not None else None
            key = scope_keys[i]
            user, _, chash = key
            old = existing.get(m.id) if m.id else None
            if old is not None and old.user not in (p.user, SHARED):
                raise ApiError(409, "id_conflict", f"id {m.id!r} is taken in this organization")
            if m.id is None:
                dup = seen.get(key) or stored.get(key)
                if dup is not None:
                    results[i] = StoreItemResult(id=dup, status="duplicate")
                    continue
            created = getattr(m, "created_at", None)
            rec = Record(
                tenant=tenant,
                id=m.id or new_id(),
                user=user,
                namespace=m.namespace,
                content=m.content,
                content_hash=chash,
                metadata=m.metadata,
                tags=list(dict.fromkeys(m.tags)),
                importance=m.importance,
                created_at=old.created_at if old else (to_us(created) if created else now + i),
                updated_at=now + i,
                expires_at=self._expiry(m.ttl_seconds, m.expires_at, now),
                vector=vec if vec is not None else np.zeros(0, dtype=np.float32),
                sensitive=m.sensitive,
            )
            seen.setdefault(key, rec.id)
            if old is not None and vec is None and _unchanged(old, rec):
                # re-importing an unchanged export (or repeating an upsert) writes nothing
                results[i] = StoreItemResult(id=rec.id, status="duplicate")
                continue
            results[i] = StoreItemResult(id=rec.id, status="updated" if old else "created")
            pending.append((rec, vec is None))
        return _StorePlan(results, pending, existing)

    async def _embedded(
        self, plan: _StorePlan, vectors: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """``vectors`` (content -> embedding) with the plan's contents not yet in it."""
        wanted = list(dict.fromkeys(r.content for r, needs in plan.pending if needs))
        missing = [c for c in wanted if c not in vectors]
        if missing:
            vectors = {**vectors, **dict(zip(missing, await self._embed(missing), strict=True))}
        return vectors

    async def _check_limits(
        self, p: Principal, records: list[Record], existing: dict[str, Record]
    ) -> None:
        if not records:
            return
        new = [r for r in records if r.id not in existing]
        add_bytes = sum(r.size for r in records) - sum(
            existing[r.id].size for r in records if r.id in existing
        )
        s = self.settings
        for attempt in range(2):
            use = await self.backend.usage(p.organization)
            over_count = use.count + len(new) > s.tenant_max_memories
            over_bytes = use.bytes + add_bytes > s.tenant_max_bytes
            if not (over_count or over_bytes):
                return
            if attempt == 0:
                await self.backend.purge_expired(p.organization, self.clock())
        raise ApiError(
            403, "tenant_limit_reached",
            "this organization's memory limit is reached",
            {"max_memories": s.tenant_max_memories, "max_bytes": s.tenant_max_bytes,
             "used_memories": use.count, "used_bytes": use.bytes},
        )  # fmt: skip

    # -- read ----------------------------------------------------------------------------

    def capabilities(self) -> Capabilities:
        """What this deployment supports: the one answer of the REST route, the MCP tool and
        the gRPC method alike."""
        s = self.settings
        return Capabilities(
            backend=self.backend.name,
            search_modes=["vector", "keyword", "hybrid"],
            embedding={"model": self.embedder.model, "dimensions": self.embedder.dim},
            limits={
                "max_body_bytes": s.max_body_bytes, "max_import_bytes": s.max_import_bytes,
                "max_batch": s.max_batch, "max_content_chars": s.max_content_chars,
                "max_top_k": s.max_top_k, "tenant_max_memories": s.tenant_max_memories,
                "tenant_max_bytes": s.tenant_max_bytes, "max_body_depth": MAX_BODY_DEPTH,
                "max_metadata_depth": MAX_METADATA_DEPTH, "max_metadata_keys": MAX_METADATA_KEYS,
                "max_metadata_bytes": MAX_METADATA_BYTES,
            },
            features=["batch_store", "dedup", "upsert", "ttl", "update", "filters",
                      "cursor_pagination", "client_embeddings", "export_jsonl", "import_jsonl",
                      "org_shared_memories"],
        )  # fmt: skip

    async def get(self, p: Principal, memory_id: str) -> Record:
        now = self.clock()
        found = await self.backend.get(p.organization, [memory_id])
        if not found or not self.visible(p, found[0], now):
            raise not_found()
        return found[0]

    async def list(
        self, p: Principal, f: Filters, after: tuple[int, str] | None, limit: int
    ) -> tuple[list[Record], tuple[int, str] | None]:
        rows = await self.backend.list(self.query(p, f, self.clock()), after, limit + 1)
        page = rows[:limit]
        more = len(rows) > limit
        return page, (page[-1].created_at, page[-1].id) if more and page else None

    async def search(self, p: Principal, req: SearchRequest) -> list[SearchHit]:
        if req.top_k > self.settings.max_top_k:
            raise ApiError(422, "top_k_too_large", f"top_k is at most {self.settings.max_top_k}")
        q = self.query(p, req.filters, self.clock())
        depth = req.top_k if req.mode != "hybrid" else min(max(3 * req.top_k, 30), 300)

        wants_vector = req.mode in ("vector", "hybrid")
        given = None
        if wants_vector and req.embedding is not None:  # a bad one fails before either half
            given = self._check_vector(req.embedding)

        async def by_vector() -> list[tuple[Record, float]]:
            if not wants_vector:
                return []
            vector = given if given is not None else await self._embed_query(req.query)
            return await self.backend.vector_search(q, vector, depth)

        async def by_keyword() -> list[tuple[Record, float]]:
            if req.mode not in ("keyword", "hybrid"):
                return []
            return await self.backend.keyword_search(q, req.query, depth)

        # hybrid's halves overlap: the keyword half's SQL (or network) waits while the
        # vector half embeds and scans, and the other way round
        kw_hits, vec_hits = await asyncio.gather(by_keyword(), by_vector())
        if req.mode == "vector":
            hits = [SearchHit(memory=to_out(r), score=s, vector_score=s) for r, s in vec_hits]
        elif req.mode == "keyword":
            hits = [SearchHit(memory=to_out(r), score=s, keyword_score=s) for r, s in kw_hits]
        else:
            hits = self._fuse(vec_hits, kw_hits, req.top_k, req.min_score)
        if req.min_score is not None:
            hits = [h for h in hits if h.score >= req.min_score]
        return hits[: req.top_k]

    @staticmethod
    def _fuse(
        vec_hits: list[tuple[Record, float]],
        kw_hits: list[tuple[Record, float]],
        top_k: int,
        min_score: float | None,
    ) -> list[SearchHit]:
        """Reciprocal rank fusion: robust to the two modes' incomparable score scales. Only
        the ``top_k`` best at or above ``min_score`` become hits (each half is 3 x top_k
        deep, at least 30, so most of the fused rows are cut anyway)."""
        fused: dict[str, float] = {}
        recs: dict[str, Record] = {}
        vs = {r.id: s for r, s in vec_hits}
        ks = {r.id: s for r, s in kw_hits}
        for hits in (vec_hits, kw_hits):
            for rank, (r, _) in enumerate(hits):
                fused[r.id] = fused.get(r.id, 0.0) + 1.0 / (RRF_K + rank + 1)
                recs[r.id] = r
        order = sorted(fused, key=lambda i: (-fused[i], i))
        if min_score is not None:
            order = [i for i in order if fused[i] >= min_score]
        return [
            SearchHit(memory=to_out(recs[i]), score=fused[i], vector_score=vs.get(i),
                      keyword_score=ks.get(i))
            for i in order[:top_k]
        ]  # fmt: skip

    # -- change --------------------------------------------------------------------------

    async def update(self, p: Principal, memory_id: str, req: UpdateRequest) -> Record:
        first = await self.get(p, memory_id)
        vector = None  # the new content's, embedded outside the tenant's write lock
        if req.content is not None and req.content != first.content:
            self._check_content(req.content)
            vector = (await self._embed([req.content]))[0]
        async with self.writing(p.organization):
            old = await self.get(p, memory_id)  # deleted meanwhile: 404; changed: on top
            now = self.clock()
            rec = replace(old, updated_at=max(now, old.updated_at + 1))
            if req.content is not None and req.content != old.content:
                rec.content = req.content
                rec.content_hash = content_hash(req.content)
                rec.vector = vector if vector is not None else (await self._embed([req.content]))[0]
            if req.metadata is not None:
                rec.metadata = req.metadata
            if req.tags is not None:
                rec.tags = list(dict.fromkeys(req.tags))
            if req.importance is not None:
                rec.importance = req.importance
            if req.ttl_seconds is not None or req.expires_at is not None:
                rec.expires_at = self._expiry(req.ttl_seconds, req.expires_at, now)
            await self._check_limits(p, [rec], {old.id: old})
            await self.backend.upsert([rec])
        return rec

    async def delete(self, p: Principal, memory_id: str) -> None:
        async with self.writing(p.organization):
            rec = await self.get(p, memory_id)
            await self.backend.delete(p.organization, [rec.id])

    async def erase(self, p: Principal, req: ErasureRequest) -> ErasureReceipt:
        """``memory_service.erasure.erase``, with no write of the tenant in between (an
        update in flight would bring an erased memory back after its receipt)."""
        async with self.writing(p.organization):
            return await erase(self.backend, p, req)

    # -- export / import -----------------------------------------------------------------

    async def export(self, p: Principal, page: int = 500) -> AsyncIterator[ImportLine]:
        after: tuple[int, str] | None = None
        while True:
            rows, after = await self.list(p, Filters(), after, page)
            for r in rows:
                yield ImportLine(
                    id=r.id, content=r.content, namespace=r.namespace,
                    scope="org" if r.user == SHARED else "user", metadata=r.metadata,
                    tags=r.tags, importance=r.importance,
                    expires_at=expiry_from_us(r.expires_at), created_at=from_us(r.created_at),
                    updated_at=from_us(r.updated_at), sensitive=r.sensitive,
                )  # fmt: skip
            if after is None:
                return
