"""Erasure on request: every memory of one user, or of a whole organization being offboarded.

One call removes them from storage, every index and every cache of the configured backend
(SQLite rows, FTS5 segments and the vector cache; the tenant's Lance table and its old
versions; the Redis hashes and the tenant's search index) and answers a receipt: how many
memories went, and their ids hashed, so the receipt can go to an audit log without
carrying what was erased. A caller may erase their own memories with ``memory:delete``;
another user's, or the organization's, needs an organization admin too.
"""

from __future__ import annotations

import hashlib

from pydantic import BaseModel, ConfigDict, Field

from hanzo_contract.principal import Principal
from memory_service.backends.base import MemoryBackend
from memory_service.errors import ApiError

ERASE_PATH = "/v1/memory/erase"


class ErasureRequest(BaseModel):
    """``user``: erase that user's memories; omitted, the whole organization's."""

    model_config = ConfigDict(extra="forbid")

    user: str | None = Field(default=None, min_length=1, max_length=255)


class ErasureReceipt(BaseModel):
    """What was removed, without what it said: the count and the ids as SHA-256 digests."""

    organization: str
    user: str | None
    memories: int
    memory_ids_sha256: list[str]


def hashed_id(memory_id: str) -> str:
    """An id in a receipt: enough to answer "was memory X erased?", not to list them."""
    return hashlib.sha256(memory_id.encode()).hexdigest()


async def erase(
    backend: MemoryBackend, principal: Principal, request: ErasureRequest
) -> ErasureReceipt:
    """Erase what ``request`` names inside ``principal``'s organization, never another's."""
    if request.user != principal.user and not principal.is_org_admin:
        raise ApiError(
            403,
            "forbidden",
            "erasing another user's or the organization's memories needs an organization admin",
        )
    ids = await backend.erase(principal.organization, request.user)
    return ErasureReceipt(
        organization=principal.organization,
        user=request.user,
        memories=len(ids),
        memory_ids_sha256=sorted(hashed_id(memory_id) for memory_id in ids),
    )
