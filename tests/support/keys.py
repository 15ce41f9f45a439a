"""Minting a key straight into a sidecar's store (the tests' shortcut past its API)."""

from __future__ import annotations

from pathlib import Path

from iam_sidecar.keys.models import NewKey
from iam_sidecar.keys.store import KeyStore


async def mint_key(
    db_path: Path, hash_secret: str, new: NewKey, cap: int | None = None
) -> tuple[str, str]:
    """``(plaintext, key_id)`` of a key made in the store at ``db_path``; ``cap``: the keys
    one owner may hold, when a test mints more than the default allows."""
    options = {} if cap is None else {"max_keys_per_owner": cap}
    store = await KeyStore.open(db_path, hash_secret.encode(), **options)
    try:
        plaintext, record = await store.create(new)
    finally:
        await store.close()
    return plaintext, record.key_id
