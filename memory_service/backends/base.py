"""The backend interface and the records and queries that cross it.

Backends store and find; the service decides (dedup, visibility, limits, fusion). Every
call names the tenant, and every backend partitions by it, so one tenant's size never
slows another's search and no query can reach across tenants.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

#: ``expires_at`` of a memory that never expires (µs); keeps range filters simple.
NEVER = 1 << 62
SHARED = ""  # the ``user`` of a memory shared at organization level

H = TypeVar("H")


@dataclass(slots=True)
class Record:
    tenant: str
    id: str
    user: str  # owner's name, or SHARED
    namespace: str
    content: str
    content_hash: str
    metadata: dict[str, Any]
    tags: list[str]
    importance: float
    created_at: int  # µs since epoch; with ``id``, the listing order
    updated_at: int
    expires_at: int  # µs, NEVER when it does not expire
    vector: np.ndarray  # float32, unit length
    #: stored sealed under the tenant's data key (``backends.sealed``); engines ignore it
    sensitive: bool = False

    @property
    def size(self) -> int:
        return len(self.content.encode())

    @property
    def meta_kv(self) -> list[str]:
        return meta_pairs(self.metadata)


@dataclass(slots=True)
class Query:
    """What a caller may see and asked for. ``user`` sees its own and the shared memories."""

    tenant: str
    user: str
    now: int
    namespace: str | None = None
    scope: str | None = None  # "user" | "org" | None for both
    tags: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    created_after: int | None = None
    created_before: int | None = None

    @property
    def users(self) -> tuple[str, ...]:
        if self.scope == "user":
            return (self.user,)
        if self.scope == "org":
            return (SHARED,)
        return (self.user, SHARED)

    @property
    def meta_kv(self) -> list[str]:
        return meta_pairs(self.metadata)

    def matches(self, r: Record) -> bool:
        """The reference semantics every backend's filters must agree with."""
        return (
            r.tenant == self.tenant
            and r.user in self.users
            and r.expires_at > self.now
            and (self.namespace is None or r.namespace == self.namespace)
            and all(t in r.tags for t in self.tags)
            and set(self.meta_kv) <= set(r.meta_kv)
            and (self.created_after is None or r.created_at > self.created_after)
            and (self.created_before is None or r.created_at < self.created_before)
        )


def _canonical(value: Any) -> str:
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def meta_pairs(metadata: dict[str, Any]) -> list[str]:
    """``key=json(value)`` for each scalar value: the form equality filters match on."""
    return sorted(
        f"{k}={_canonical(v)}"
        for k, v in metadata.items()
        if v is None or isinstance(v, str | int | float | bool)
    )


def by_tenant(records: list[Record]) -> dict[str, list[Record]]:
    """``records`` grouped by tenant, each group in the given order."""
    groups: dict[str, list[Record]] = {}
    for record in records:
        groups.setdefault(record.tenant, []).append(record)
    return groups


def opened(handle: H | None) -> H:
    """``handle`` once :meth:`MemoryBackend.open` has set it; a clear error before that."""
    if handle is None:
        raise RuntimeError("backend not open")
    return handle


@dataclass(slots=True)
class Usage:
    count: int
    bytes: int


class MemoryBackend(ABC):
    name: str

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Connect and create what is missing."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    async def maintain(self) -> None:  # noqa: B027 - optional hook
        """Periodic housekeeping (index builds, compaction); called off the request path."""

    @abstractmethod
    async def upsert(self, records: list[Record]) -> None:
        """Insert or replace by (tenant, id); durable when it returns."""

    @abstractmethod
    async def get(self, tenant: str, ids: list[str]) -> list[Record]:
        """Records by id within the tenant, expired or not; visibility is the caller's job."""

    async def find_duplicates(
        self, tenant: str, keys: list[tuple[str, str, str]], now: int
    ) -> dict[tuple[str, str, str], str]:
        """The id of a live memory for each ``(user, namespace, content hash)`` key that has one."""
        hashes = sorted({key[2] for key in keys})
        if not hashes:
            return {}
        wanted = set(keys)
        cap = max(64 * len(keys), 1024)
        found = {}
        for user, namespace, chash, memory_id in await self.live_with_hashes(
            tenant, hashes, now, cap
        ):
            if (user, namespace, chash) in wanted:
                found[(user, namespace, chash)] = memory_id
        return found

    @abstractmethod
    async def live_with_hashes(
        self, tenant: str, hashes: list[str], now: int, cap: int
    ) -> list[tuple[str, str, str, str]]:
        """``(user, namespace, content hash, id)`` of the tenant's live memories with any of
        ``hashes``. ``cap`` bounds the rows for engines whose queries need a result limit."""

    @abstractmethod
    async def delete(self, tenant: str, ids: list[str]) -> int:
        """Remove from storage and every index at once; returns how many existed."""

    @abstractmethod
    async def erase(self, tenant: str, user: str | None) -> list[str]:
        """Erasure on request: physically remove every memory ``user`` owns (every memory
        of the tenant when ``None``), expired or not, from storage, every index and cache,
        leaving no old version or index segment behind; returns the ids removed."""

    @abstractmethod
    async def list(self, q: Query, after: tuple[int, str] | None, limit: int) -> list[Record]:
        """Matching records ordered by (created_at, id), strictly after ``after``."""

    @abstractmethod
    async def vector_search(
        self, q: Query, vector: np.ndarray, k: int
    ) -> list[tuple[Record, float]]:
        """Top ``k`` matching records by cosine similarity, best first."""

    @abstractmethod
    async def keyword_search(self, q: Query, text: str, k: int) -> list[tuple[Record, float]]:
        """Top ``k`` matching records by full-text relevance (higher is better)."""

    @abstractmethod
    async def usage(self, tenant: str) -> Usage:
        """Count and content bytes of the tenant's stored memories."""

    @abstractmethod
    async def purge_expired(self, tenant: str, now: int) -> int:
        """Physically remove the tenant's expired memories."""


def keyword_terms(text: str, limit: int = 32) -> list[str]:
    """Words of a keyword query, lower-cased, alphanumeric only: safe in any query syntax."""
    out: list[str] = []
    word: list[str] = []
    for ch in text.lower() + " ":
        if ch.isalnum():
            word.append(ch)
        elif word:
            term = "".join(word)
            if term not in out:
                out.append(term)
            word = []
    return out[:limit]
