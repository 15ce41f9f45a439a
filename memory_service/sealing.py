"""Per-tenant data keys for sensitive memories: AES-256-GCM, wrapped by the operator's key.

Envelope encryption. Each tenant gets random 256-bit data keys (DEKs); content is sealed
with the tenant's active DEK, and only wrapped DEKs are ever stored (AES-GCM under a
key-encryption key, KEK, that the operator provides and that never touches the disk here).
So a copy of the database and the key file is useless without the operator's key.

Rotation without downtime:
- a new operator key: add it to the keyring next to the old one and make it active, then
  :meth:`TenantKeyring.rewrap` re-wraps every DEK (no memory is re-encrypted); once it has
  run, the old operator key can be removed;
- a new data key for a tenant: :meth:`TenantKeyring.rotate_data_key`; new content is sealed
  with it, older content stays readable with the older DEKs it names.

A sealed value names its DEK and binds tenant and memory id as associated data, so a
sealed value copied to another tenant or memory does not open.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel

from hanzo_contract.settings import write_private

SEALED_PREFIX = "enc:v1:"
_NONCE = 12


class SealingError(Exception):
    """A value or a wrapped key does not open: wrong key, other tenant/id, or tampered."""


class _WrappedKey(BaseModel):
    id: int
    kek: str
    wrapped: str  # base64(nonce + AES-GCM(KEK, DEK, aad=tenant|id))


class _TenantKeys(BaseModel):
    active: int
    keys: list[_WrappedKey]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text.encode())


def _seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(_NONCE)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def _open(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(sealed[:_NONCE], sealed[_NONCE:], aad)
    except (InvalidTag, ValueError):
        raise SealingError("does not open with this key and context") from None


class TenantKeyring:
    """The tenants' wrapped data keys in one JSON file (0600), and the operator's KEKs."""

    def __init__(self, path: Path, keks: dict[str, bytes], active_kek: str) -> None:
        if active_kek not in keks:
            raise ValueError(f"active operator key {active_kek!r} is not in the keyring")
        if any(len(key) != 32 for key in keks.values()):
            raise ValueError("operator keys must be 32 bytes (AES-256)")
        self.path = path
        self._keks = dict(keks)
        self._active_kek = active_kek
        self._lock = threading.Lock()
        self._plain: dict[tuple[str, int], bytes] = {}  # unwrapped DEKs, in memory only

    # ------------------------------------------------------------------ storage
    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """This thread and every other process (a serving replica, ``rewrap`` from the CLI)
        change the key file one at a time: a lost update would lose a data key."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._lock, open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _load(self) -> dict[str, _TenantKeys]:
        if not self.path.exists():
            return {}
        raw = json.loads(self.path.read_text())
        return {tenant: _TenantKeys.model_validate(keys) for tenant, keys in raw.items()}

    def _save(self, found: dict[str, _TenantKeys]) -> None:
        # durably: a host crash must not leave rows sealed under a key the file lost
        write_private(self.path, json.dumps({t: k.model_dump() for t, k in found.items()}))

    @staticmethod
    def _aad(tenant: str, dek_id: int) -> bytes:
        return f"hanzo-dek|{tenant}|{dek_id}".encode()

    def _unwrap(self, tenant: str, entry: _WrappedKey) -> bytes:
        kek = self._keks.get(entry.kek)
        if kek is None:
            raise SealingError(f"operator key {entry.kek!r} is not in the keyring")
        return _open(kek, _unb64(entry.wrapped), self._aad(tenant, entry.id))

    def _new_entry(self, tenant: str, dek_id: int) -> tuple[_WrappedKey, bytes]:
        dek = secrets.token_bytes(32)
        wrapped = _seal(self._keks[self._active_kek], dek, self._aad(tenant, dek_id))
        return _WrappedKey(id=dek_id, kek=self._active_kek, wrapped=_b64(wrapped)), dek

    def _data_key(self, tenant: str, dek_id: int | None) -> tuple[int, bytes]:
        """``(id, key)``: the tenant's DEK ``dek_id`` (the active one when None), made on
        first use."""
        if dek_id is not None and (hit := self._plain.get((tenant, dek_id))) is not None:
            return dek_id, hit
        with self._exclusive():
            found = self._load()
            keys = found.get(tenant)
            if keys is None:
                if dek_id is not None:
                    raise SealingError(f"no data key {dek_id} for this tenant")
                entry, dek = self._new_entry(tenant, 1)
                found[tenant] = _TenantKeys(active=1, keys=[entry])
                self._save(found)
                self._plain[(tenant, 1)] = dek
                return 1, dek
            wanted = keys.active if dek_id is None else dek_id
            entry = next((k for k in keys.keys if k.id == wanted), None)
            if entry is None:
                raise SealingError(f"no data key {wanted} for this tenant")
            dek = self._unwrap(tenant, entry)
            self._plain[(tenant, wanted)] = dek
            return wanted, dek

    def hash_key(self, tenant: str) -> bytes:
        """The tenant's key for content hashes of sealed memories: derived from its first
        data key, which is never dropped, so duplicates stay found across rotations."""
        if not self._has_keys(tenant):
            self._data_key(tenant, None)  # makes data key 1
        _, first = self._data_key(tenant, 1)
        return hmac.new(first, b"hanzo-content-hash", hashlib.sha256).digest()

    def _has_keys(self, tenant: str) -> bool:
        return (tenant, 1) in self._plain or tenant in self._load()

    # ------------------------------------------------------------------ values
    @staticmethod
    def _value_aad(tenant: str, memory_id: str) -> bytes:
        return f"hanzo-memory|{tenant}|{memory_id}".encode()

    def seal(self, tenant: str, memory_id: str, plaintext: str) -> str:
        dek_id, dek = self._data_key(tenant, None)
        sealed = _seal(dek, plaintext.encode(), self._value_aad(tenant, memory_id))
        return f"{SEALED_PREFIX}{dek_id}:{_b64(sealed)}"

    def open(self, tenant: str, memory_id: str, value: str) -> str:
        if not value.startswith(SEALED_PREFIX):
            raise SealingError("not a sealed value")
        dek_text, _, body = value[len(SEALED_PREFIX) :].partition(":")
        if not dek_text.isdigit():
            raise SealingError("malformed sealed value")
        _, dek = self._data_key(tenant, int(dek_text))
        return _open(dek, _unb64(body), self._value_aad(tenant, memory_id)).decode()

    # ------------------------------------------------------------------ rotation
    def rotate_data_key(self, tenant: str) -> int:
        """A new active DEK for ``tenant``; the older ones keep opening what they sealed."""
        with self._exclusive():
            found = self._load()
            keys = found.get(tenant)
            new_id = 1 if keys is None else max(k.id for k in keys.keys) + 1
            entry, dek = self._new_entry(tenant, new_id)
            if keys is None:
                found[tenant] = _TenantKeys(active=new_id, keys=[entry])
            else:
                keys.keys.append(entry)
                keys.active = new_id
            self._save(found)
            self._plain[(tenant, new_id)] = dek
            return new_id

    def rewrap(self) -> int:
        """Re-wrap every DEK under the active operator key (the data is not touched);
        returns how many were re-wrapped. Afterwards older operator keys can go."""
        with self._exclusive():
            found = self._load()
            count = 0
            for tenant, keys in found.items():
                for index, entry in enumerate(keys.keys):
                    if entry.kek == self._active_kek:
                        continue
                    dek = self._unwrap(tenant, entry)
                    wrapped = _seal(self._keks[self._active_kek], dek, self._aad(tenant, entry.id))
                    keys.keys[index] = _WrappedKey(
                        id=entry.id, kek=self._active_kek, wrapped=_b64(wrapped)
                    )
                    count += 1
            self._save(found)
            return count


class OperatorKeys(BaseModel):
    """The operator's key file: every key-encryption key by id, and which one wraps now."""

    active: str
    keys: dict[str, str]  # id -> base64 of 32 bytes


def keyring_from_file(key_file: Path, keyring_path: Path) -> TenantKeyring:
    """The keyring for the operator's ``key_file`` (see ``MemorySettings.sealing_key_file``)."""
    found = OperatorKeys.model_validate_json(key_file.read_text())
    keks = {key_id: base64.b64decode(value) for key_id, value in found.keys.items()}
    return TenantKeyring(keyring_path, keks, found.active)
