"""Erasure on request, the sidecar's part: a user's keys, or a whole organization's, are
revoked, and one audit row is the receipt of everything erased (the memory service's
receipt included): counts and SHA-256 digests of the ids, never what they held.

Revocation reaches every gateway within its verify cache TTL (the revocation bound).
"""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import BaseModel

from iam_sidecar.keys.store import KeyStore

ERASURE_ACTION = "erasure"


class ErasureReceipt(BaseModel):
    """What the audit log keeps of an erasure."""

    organization: str
    user: str | None
    keys: int
    key_ids_sha256: list[str]
    memories: int | None = None
    memory_ids_sha256: list[str] | None = None


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


async def erase_keys(
    store: KeyStore,
    organization: str,
    user: str | None,
    *,
    memories: dict[str, Any] | None = None,
    actor: str = "cli",
) -> ErasureReceipt:
    """Revoke every live key ``user`` owns (every key of the organization when ``None``)
    and audit the receipt, with ``memories`` (the memory service's receipt) folded in."""
    owner = f"{organization}/{user}" if user is not None else None
    revoked = []
    for record in await store.list(organization, owner=owner, include_inactive=False):
        await store.revoke(organization, record.key_id, actor=actor, source="erasure")
        revoked.append(record.key_id)
    receipt = ErasureReceipt(
        organization=organization,
        user=user,
        keys=len(revoked),
        key_ids_sha256=sorted(_digest(key_id) for key_id in revoked),
        memories=memories.get("memories") if memories else None,
        memory_ids_sha256=memories.get("memory_ids_sha256") if memories else None,
    )
    await store.audit.record(
        actor=actor,
        action=ERASURE_ACTION,
        outcome="ok",
        organization=organization,
        target=owner or organization,
        source="erasure",
        details=receipt.model_dump(exclude={"organization"}),
    )
    return receipt
