"""Writes of one tenant that overlap: each sees the other's result, on every backend.

A store, an update and a delete read what they depend on (the id's row, a duplicate of the
content, the memory itself), wait (the model embeds in a worker thread), then write. Two
that overlapped both acted on the state before the other: a content stored twice, one
user's memory taken over by another's store of its id, a deleted or erased memory brought
back by an update, an update's change lost. The service now reads again and writes under
its tenant's write lock (``MemoryService.writing``). :class:`GatedEmbedder` is the test's
stand-in for the model: it holds each embedding until the test opens the gate, so the
overlap is certain rather than timed.
"""

from __future__ import annotations

import asyncio
import uuid

import numpy as np
import pytest

from hanzo_contract.principal import Principal
from memory_service.backends.base import MemoryBackend
from memory_service.embeddings.deterministic import DeterministicEmbedder
from memory_service.erasure import ErasureRequest
from memory_service.errors import ApiError
from memory_service.models import Filters, MemoryIn, UpdateRequest
from memory_service.service import MemoryService

from .conftest import DIM, settings_for

SCOPES = frozenset({"memory:read", "memory:write", "memory:delete"})


class GatedEmbedder(DeterministicEmbedder):
    def __init__(self) -> None:
        super().__init__(DIM)
        self.gate = asyncio.Event()
        self.waiting = 0

    async def embed(self, texts: list[str]) -> np.ndarray:
        self.waiting += 1
        await self.gate.wait()
        return await super().embed(texts)


@pytest.fixture
def org() -> str:
    return f"race-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def service(backend: MemoryBackend, tmp_path) -> MemoryService:
    return MemoryService(backend, GatedEmbedder(), settings_for(backend.name, tmp_path))


def user(org: str, name: str) -> Principal:
    return Principal(organization=org, subject=f"{org}/{name}", scopes=SCOPES)


async def until_waiting(service: MemoryService, n: int) -> None:
    """Until ``n`` embeddings wait at the gate (each write has read and is embedding)."""
    embedder = service.embedder
    assert isinstance(embedder, GatedEmbedder)
    for _ in range(5000):  # the reads before it may run on a worker thread: up to 5 s
        if embedder.waiting >= n:
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"{embedder.waiting} embeddings waiting, not {n}")


def opened(service: MemoryService) -> None:
    embedder = service.embedder
    assert isinstance(embedder, GatedEmbedder)
    embedder.gate.set()


async def update_in_flight(service: MemoryService, p: Principal) -> tuple[str, asyncio.Future]:
    """A stored memory, and an update of its content waiting at the gate (it has read)."""
    opened(service)
    (stored,) = await service.store(p, [MemoryIn(content=f"stored {uuid.uuid4().hex}")])
    service.embedder.gate.clear()
    update = asyncio.ensure_future(service.update(p, stored.id, UpdateRequest(content="v2")))
    await until_waiting(service, 2)
    return stored.id, update


async def test_one_content_stored_twice_at_once_is_one_memory(service, org) -> None:
    alice = user(org, "alice")
    both = [asyncio.ensure_future(service.store(alice, [MemoryIn(content="buy milk")]))
            for _ in range(2)]  # fmt: skip
    await until_waiting(service, 2)
    opened(service)
    results = [r[0] for r in await asyncio.gather(*both)]
    assert sorted(r.status for r in results) == ["created", "duplicate"]
    rows, _ = await service.list(alice, Filters(), None, 10)
    assert [r.id for r in rows] == [results[0].id] == [results[1].id]


async def test_two_users_storing_one_id_at_once_never_take_each_others(service, org) -> None:
    alice, bob = user(org, "alice"), user(org, "bob")
    stores = [
        asyncio.ensure_future(service.store(alice, [MemoryIn(id="x1", content="alice's")])),
        asyncio.ensure_future(service.store(bob, [MemoryIn(id="x1", content="bob's")])),
    ]
    await until_waiting(service, 2)
    opened(service)
    got = await asyncio.gather(*stores, return_exceptions=True)
    refused = [g for g in got if isinstance(g, ApiError)]
    assert len(refused) == 1 and refused[0].code == "id_conflict", got
    winner, content = (alice, "alice's") if not isinstance(got[0], ApiError) else (bob, "bob's")
    (row,) = await service.backend.get(org, ["x1"])
    assert (row.user, row.content) == (winner.user, content)


async def test_a_memory_deleted_while_an_update_embeds_stays_deleted(service, org) -> None:
    alice = user(org, "alice")
    memory_id, update = await update_in_flight(service, alice)
    await service.delete(alice, memory_id)
    opened(service)
    with pytest.raises(ApiError) as gone:
        await update
    assert gone.value.status == 404
    assert await service.backend.get(org, [memory_id]) == []


async def test_a_memory_erased_while_an_update_embeds_stays_erased(service, org) -> None:
    alice = user(org, "alice")
    memory_id, update = await update_in_flight(service, alice)
    receipt = await service.erase(alice, ErasureRequest(user="alice"))
    assert receipt.memories == 1
    opened(service)
    with pytest.raises(ApiError) as gone:
        await update
    assert gone.value.status == 404
    assert await service.backend.get(org, [memory_id]) == []


async def test_two_updates_at_once_keep_both_changes(service, org) -> None:
    alice = user(org, "alice")
    opened(service)
    (stored,) = await service.store(alice, [MemoryIn(content="first")])
    service.embedder.gate.clear()
    content = asyncio.ensure_future(
        service.update(alice, stored.id, UpdateRequest(content="second", tags=["t1"]))
    )
    await until_waiting(service, 2)
    await service.update(alice, stored.id, UpdateRequest(metadata={"k": 1}))
    opened(service)
    await content
    (row,) = await service.backend.get(org, [stored.id])
    assert (row.content, row.tags, row.metadata) == ("second", ["t1"], {"k": 1})
