"""A backend that stores sensitive memories sealed (see ``memory_service.sealing``).

It wraps any engine: a record marked ``sensitive`` reaches the engine with its content
sealed under the tenant's data key and its content hash replaced by a keyed hash (a plain
SHA-256 of short content could be guessed), and comes back opened. What stays searchable:
the vector (embedded from the plaintext before sealing, so vector search finds sensitive
memories, and a vector does reveal something of the meaning), metadata, tags, namespace
and dates. What does not: keyword search (the full-text index only ever sees ciphertext),
and equality of content across tenants.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import replace

import numpy as np

from memory_service.backends.base import MemoryBackend, Query, Record, Usage
from memory_service.sealing import SEALED_PREFIX, TenantKeyring


class SealedBackend(MemoryBackend):
    def __init__(self, inner: MemoryBackend, keyring: TenantKeyring) -> None:
        self.inner = inner
        self.keyring = keyring
        self.name = inner.name

    # ------------------------------------------------------------------ sealing
    def _hash_key(self, tenant: str) -> bytes:
        return self.keyring.hash_key(tenant)

    def _keyed_hash(self, tenant: str, chash: str) -> str:
        return "k" + hmac.new(self._hash_key(tenant), chash.encode(), hashlib.sha256).hexdigest()

    def _seal(self, record: Record) -> Record:
        # content that merely looks sealed is sealed too, so it reads back as it was written
        if not (record.sensitive or record.content.startswith(SEALED_PREFIX)):
            return record
        return replace(
            record,
            content=self.keyring.seal(record.tenant, record.id, record.content),
            content_hash=self._keyed_hash(record.tenant, record.content_hash),
            sensitive=True,
        )

    def _open(self, record: Record) -> Record:
        if not record.content.startswith(SEALED_PREFIX):
            return record
        plaintext = self.keyring.open(record.tenant, record.id, record.content)
        return replace(
            record,
            content=plaintext,
            content_hash=hashlib.sha256(plaintext.encode()).hexdigest(),
            sensitive=True,
        )

    # ------------------------------------------------------------------ delegation
    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def maintain(self) -> None:
        await self.inner.maintain()

    async def upsert(self, records: list[Record]) -> None:
        await self.inner.upsert([self._seal(record) for record in records])

    async def get(self, tenant: str, ids: list[str]) -> list[Record]:
        return [self._open(record) for record in await self.inner.get(tenant, ids)]

    async def live_with_hashes(
        self, tenant: str, hashes: list[str], now: int, cap: int
    ) -> list[tuple[str, str, str, str]]:
        keyed = {self._keyed_hash(tenant, chash): chash for chash in hashes}
        rows = await self.inner.live_with_hashes(tenant, [*hashes, *keyed], now, cap)
        return [(user, ns, keyed.get(chash, chash), mid) for user, ns, chash, mid in rows]

    async def delete(self, tenant: str, ids: list[str]) -> int:
        return await self.inner.delete(tenant, ids)

    async def erase(self, tenant: str, user: str | None) -> list[str]:
        return await self.inner.erase(tenant, user)

    async def list(self, q: Query, after: tuple[int, str] | None, limit: int) -> list[Record]:
        return [self._open(record) for record in await self.inner.list(q, after, limit)]

    async def vector_search(
        self, q: Query, vector: np.ndarray, k: int
    ) -> list[tuple[Record, float]]:
        hits = await self.inner.vector_search(q, vector, k)
        return [(self._open(record), score) for record, score in hits]

    async def keyword_search(self, q: Query, text: str, k: int) -> list[tuple[Record, float]]:
        hits = await self.inner.keyword_search(q, text, k)
        return [(self._open(record), score) for record, score in hits]

    async def usage(self, tenant: str) -> Usage:
        return await self.inner.usage(tenant)

    async def purge_expired(self, tenant: str, now: int) -> int:
        return await self.inner.purge_expired(tenant, now)
