"""API key store over SQLite or PostgreSQL: only the keyed digest and display prefix are stored.

Lookups go by the HMAC digest of the presented key (never by the plaintext) and the match
is confirmed with ``hmac.compare_digest``. Rotation keeps one record: the new digest
replaces the old, which stays valid as ``prev_digest`` until ``grace_until``. ``last_used``
and usage counters are batched in memory and flushed at most every ``flush_interval``.

Expiry, rotation grace and last-used times read the ``clock`` the store is handed
(``time.time`` unless a test drives one), never the wall clock directly.

Writes that check before they change (the per-owner cap, a parent's liveness, revocation
of a lineage, rotation) run in a transaction locked by organization: on PostgreSQL two
sidecar replicas then cannot both pass the same check (see :mod:`iam_sidecar.db.database`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hmac
import json
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from hanzo_contract.apikey import generate_key, hash_key, parse_key_id
from hanzo_contract.principal import Limits, PrincipalKind
from hanzo_contract.scopes import unknown_scopes
from iam_sidecar.db.database import Connection, Database, Row, open_database
from iam_sidecar.errors import (
    DuplicateKeyName,
    ExpiredKey,
    ExpiryEscalation,
    InvalidKey,
    InvalidRequest,
    KeyNotActive,
    KeyNotFound,
    ParentKeyInactive,
    RevokedKey,
    TooManyKeys,
    UniqueViolation,
    UnknownScope,
)
from iam_sidecar.keys.models import KeyRecord, KeyState, NewKey, OwnerGrant
from iam_sidecar.records import audit
from iam_sidecar.records.audit import AuditLog
from iam_sidecar.records.usage import UsageCounters

#: Seconds since the epoch, like ``time.time``; tests hand the store one they move.
Clock = Callable[[], float]

SCOPE_RE = re.compile(r"^[a-z][a-z0-9_-]{0,39}:[a-z][a-z0-9_-]{0,39}$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$")
OWNER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}/[A-Za-z0-9][A-Za-z0-9._@+-]{0,199}$")
MAX_GRACE_SECONDS = 30 * 24 * 3600
#: live keys one owner may hold unless the store is told otherwise
DEFAULT_MAX_KEYS_PER_OWNER = 50


def validate_scopes(scopes: Iterable[str]) -> frozenset[str]:
    scopes = frozenset(scopes)
    bad = sorted(s for s in scopes if not isinstance(s, str) or not SCOPE_RE.match(s))
    if bad:
        raise InvalidRequest("scopes must look like 'area:action'", {"invalid_scopes": bad})
    unknown = unknown_scopes(scopes)
    if unknown:
        raise UnknownScope(
            f"unknown scope {', '.join(unknown)} (hanzo_contract.scopes)",
            {"unknown_scopes": unknown},
        )
    return scopes


class KeyStore:
    def __init__(
        self,
        db: Database,
        hash_secret: bytes,
        flush_interval: float = 1.0,
        clock: Clock = time.time,
        max_keys_per_owner: int = DEFAULT_MAX_KEYS_PER_OWNER,
    ) -> None:
        if len(hash_secret) < 16:
            raise ValueError("key hash secret must be at least 16 bytes")
        self.db = db
        self.clock = clock
        self.max_keys_per_owner = max_keys_per_owner
        self.audit = AuditLog(db)
        self.usage = UsageCounters(db, clock)
        self._secret = hash_secret
        self._flush_interval = flush_interval
        self._last_used: dict[str, float] = {}
        self._last_flush = time.monotonic()
        self._flush_task: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls,
        target: str | Path,
        hash_secret: bytes,
        flush_interval: float = 1.0,
        clock: Clock = time.time,
        max_keys_per_owner: int = DEFAULT_MAX_KEYS_PER_OWNER,
        migrate_dsn: str | None = None,
    ) -> KeyStore:
        """The store in ``target``: a SQLite file, or a ``postgresql://`` DSN."""
        db = await open_database(target, migrate_dsn=migrate_dsn)
        return cls(db, hash_secret, flush_interval, clock, max_keys_per_owner)

    async def close(self) -> None:
        if self._flush_task is not None:
            with contextlib.suppress(Exception):
                await self._flush_task
        await self.flush()
        await self.db.close()

    # ---- lifecycle -------------------------------------------------------------------

    async def create(
        self, new: NewKey, *, actor: str = "system", source: str | None = None
    ) -> tuple[str, KeyRecord]:
        """Store a key; returns ``(plaintext, record)``. The plaintext is never stored.

        No Casdoor check here: surfaces go through :class:`~iam_sidecar.keys.issuer.KeyIssuer`.
        """
        organization, owner, name = new.organization, new.owner, new.name
        expires_at, limits, owner_kind = new.expires_at, new.limits, new.owner_kind
        scope_set = validate_scopes(new.scopes)
        if not OWNER_RE.match(owner) or owner.split("/", 1)[0] != organization:
            raise InvalidRequest(
                "owner must be 'organization/name' inside the key's organization",
                {"owner": owner, "organization": organization},
            )
        if not NAME_RE.match(name):
            raise InvalidRequest("name: 1-100 characters, letters, digits, space, '.', '_' or '-'")
        now = self.clock()
        if expires_at is not None and expires_at <= now:
            raise InvalidRequest("expires_at must be in the future")
        plaintext, key_id = generate_key()
        record = KeyRecord(
            key_id=key_id,
            organization=organization,
            owner=owner,
            owner_kind=owner_kind,
            name=name,
            scopes=scope_set,
            limits=limits,
            created_at=now,
            expires_at=expires_at,
            parent_key_id=new.parent_key_id,
        )
        try:
            async with self.db.transaction(lock=organization) as conn:
                # both checks under the organization's lock: a parent revoked, or a key
                # created, by a concurrent request (on any replica) cannot slip in between
                # the check and the insert
                await self._check_parent(conn, organization, new, now)
                await self._check_cap(conn, owner, now)
                await conn.execute(
                    "INSERT INTO api_keys (key_id, organization, owner, owner_kind, name, scopes,"
                    " limits, digest, created_at, expires_at, parent_key_id)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        key_id,
                        organization,
                        owner,
                        owner_kind.value,
                        name,
                        json.dumps(sorted(scope_set)),
                        limits.model_dump_json(exclude_none=True) if limits else None,
                        hash_key(self._secret, plaintext),
                        now,
                        expires_at,
                        new.parent_key_id,
                    ),
                )
                await audit.append(
                    conn,
                    actor=actor,
                    action="key.create",
                    outcome="ok",
                    organization=organization,
                    target=key_id,
                    source=source,
                    details={
                        "owner": owner,
                        "name": name,
                        "scopes": sorted(scope_set),
                        "parent_key_id": new.parent_key_id,
                    },
                )
        except UniqueViolation:
            raise DuplicateKeyName(
                f"owner {owner!r} already has a key named {name!r}", {"name": name}
            ) from None
        return plaintext, record

    async def _check_parent(
        self, conn: Connection, organization: str, new: NewKey, now: float
    ) -> None:
        """The minting key must still be live, and its child may not outlive it."""
        parent = await self._check_asking(conn, organization, new.parent_key_id, now)
        if (
            parent is not None
            and parent.expires_at is not None
            and (new.expires_at is None or new.expires_at > parent.expires_at)
        ):
            raise ExpiryEscalation("a key cannot create a key that outlives it")

    async def _check_asking(
        self, conn: Connection, organization: str, key_id: str | None, now: float
    ) -> KeyRecord | None:
        """The record of the key that asks (None: not a key), which must still be live, read
        in the transaction that acts on its behalf."""
        if key_id is None:
            return None
        asking = await self._get(conn, organization, key_id)
        if asking.state(now) is not KeyState.ACTIVE:
            raise ParentKeyInactive("the key asking is no longer active")
        return asking

    async def _check_cap(self, conn: Connection, owner: str, now: float) -> None:
        row = await conn.fetch_one(
            "SELECT COUNT(*) AS live FROM api_keys WHERE owner = ? AND revoked_at IS NULL"
            " AND (expires_at IS NULL OR expires_at > ?)",
            (owner, now),
        )
        live = int(row["live"]) if row else 0
        if live >= self.max_keys_per_owner:
            raise TooManyKeys(
                f"{owner!r} already holds {live} live keys (the most one owner may hold);"
                " revoke one first",
                {"live_keys": live, "max_keys_per_owner": self.max_keys_per_owner},
            )

    async def revoke(
        self, organization: str, key_id: str, *, actor: str = "system", source: str | None = None
    ) -> KeyRecord:
        """Revoke now (both current and any in-grace previous secret), and every key it
        minted, and theirs, in one transaction: a child dies with its parent. Idempotent."""
        async with self.db.transaction(lock=organization) as conn:
            record = await self._get(conn, organization, key_id)
            rows = await conn.fetch_all(
                "WITH RECURSIVE lineage(id) AS (SELECT CAST(? AS TEXT) UNION"
                " SELECT k.key_id FROM api_keys k JOIN lineage ON k.parent_key_id = lineage.id)"
                " SELECT k.key_id FROM api_keys k JOIN lineage ON k.key_id = lineage.id"
                " WHERE k.revoked_at IS NULL",
                (key_id,),
            )
            doomed = [row["key_id"] for row in rows]
            if doomed:
                await conn.execute_many(
                    "UPDATE api_keys SET revoked_at = ?, grace_until = NULL WHERE key_id = ?",
                    [(self.clock(), doomed_id) for doomed_id in doomed],
                )
            descendants = sorted(set(doomed) - {key_id})
            await audit.append(
                conn,
                actor=actor,
                action="key.revoke",
                outcome="ok" if record.revoked_at is None else "noop",
                organization=organization,
                target=key_id,
                source=source,
                details={"descendants": descendants} if descendants else None,
            )
            return await self._get(conn, organization, key_id)

    async def rotate(
        self,
        organization: str,
        key_id: str,
        grace_seconds: float,
        *,
        actor: str = "system",
        source: str | None = None,
        by_key: str | None = None,
    ) -> str:
        """New secret for the same key id; the old secret stays valid ``grace_seconds``.
        ``by_key``: the key that asks, which must still be live when the secret is written
        (a revocation between its check and the write would hand a revoked key's holder
        another key's secret).

        Rotating again inside a grace period ends the older secret's grace at once: only
        the newest previous secret is kept.
        """
        if not 0 <= grace_seconds <= MAX_GRACE_SECONDS:
            raise InvalidRequest(f"grace_seconds must be between 0 and {MAX_GRACE_SECONDS}")
        async with self.db.transaction(lock=organization) as conn:
            await self._check_asking(conn, organization, by_key, self.clock())
            record = await self._get(conn, organization, key_id)
            state = record.state(self.clock())
            if state is not KeyState.ACTIVE:
                raise KeyNotActive(f"key {key_id} is {state.value}; cannot rotate")
            plaintext, _ = generate_key(key_id)
            now = self.clock()
            await conn.execute(
                "UPDATE api_keys SET prev_digest = digest, digest = ?, grace_until = ?,"
                " rotated_at = ? WHERE key_id = ?",
                (hash_key(self._secret, plaintext), now + grace_seconds, now, key_id),
            )
            await audit.append(
                conn,
                actor=actor,
                action="key.rotate",
                outcome="ok",
                organization=organization,
                target=key_id,
                source=source,
                details={"grace_seconds": grace_seconds},
            )
        return plaintext

    # ---- reads -----------------------------------------------------------------------

    async def show(self, organization: str, key_id: str) -> KeyRecord:
        """The key, if it belongs to ``organization``; otherwise :class:`KeyNotFound`."""
        return await self._get(self.db, organization, key_id)

    async def list(
        self, organization: str, owner: str | None = None, include_inactive: bool = True
    ) -> list[KeyRecord]:
        sql = "SELECT * FROM api_keys WHERE organization = ?"
        params: list[Any] = [organization]
        if owner is not None:
            sql += " AND owner = ?"
            params.append(owner)
        sql += " ORDER BY created_at, key_id"
        rows = await self.db.fetch_all(sql, params)
        now = self.clock()
        records = [self._record(row, now) for row in rows]
        if not include_inactive:
            records = [r for r in records if r.state(now) is KeyState.ACTIVE]
        return records

    async def live_owners(self) -> list[tuple[str, PrincipalKind]]:
        """Owners of keys that can still verify: the reconcile loop refreshes these."""
        rows = await self.db.fetch_all(
            "SELECT DISTINCT owner, owner_kind FROM api_keys WHERE revoked_at IS NULL"
            " AND (expires_at IS NULL OR expires_at > ?) ORDER BY owner",
            (self.clock(),),
        )
        return [(row["owner"], PrincipalKind(row["owner_kind"])) for row in rows]

    # ---- verification (hot path) -----------------------------------------------------

    async def verify(self, plaintext: str) -> KeyRecord:
        """The record of a live key, or :class:`InvalidKey`/``RevokedKey``/``ExpiredKey``."""
        record, _ = await self.verify_with_grant(plaintext)
        return record

    async def verify_with_grant(self, plaintext: str) -> tuple[KeyRecord, OwnerGrant | None]:
        """Like :meth:`verify`, plus what Casdoor last said about the owner.

        A key whose owner Casdoor reported deleted or disabled fails as ``invalid_key``.
        """
        key_id = parse_key_id(plaintext)
        if key_id is None:
            raise InvalidKey("malformed API key")
        digest = hash_key(self._secret, plaintext)
        row = await self.db.fetch_one(
            "SELECT k.*, g.owner AS g_owner, g.active AS g_active, g.roles AS g_roles,"
            " g.scopes AS g_scopes, g.is_org_admin AS g_is_org_admin,"
            " g.refreshed_at AS g_refreshed_at"
            " FROM api_keys k LEFT JOIN owner_grants g ON g.owner = k.owner"
            " WHERE k.digest = ? OR k.prev_digest = ?",
            (digest, digest),
        )
        now = self.clock()
        if row is None or row["key_id"] != key_id:
            raise InvalidKey("unknown API key")
        if not hmac.compare_digest(row["digest"], digest):
            prev = row["prev_digest"] or ""
            if not hmac.compare_digest(prev, digest):
                raise InvalidKey("unknown API key")
            if row["revoked_at"] is None and (row["grace_until"] or 0) <= now:
                raise ExpiredKey("this key was rotated and its grace period has ended")
        record = self._record(row, now)
        state = record.state(now)
        if state is KeyState.REVOKED:
            raise RevokedKey("API key revoked")
        if state is KeyState.EXPIRED:
            raise ExpiredKey("API key expired")
        grant = _grant(row, "g_") if row["g_owner"] is not None else None
        if grant is not None and not grant.active:
            raise InvalidKey("the key's owner is deleted or disabled in Casdoor")
        self._touch(record, now)
        return record, grant

    def _touch(self, record: KeyRecord, now: float) -> None:
        self._last_used[record.key_id] = now
        self.usage.count_verification(record.organization, record.owner, record.key_id)
        mono = time.monotonic()
        if mono - self._last_flush >= self._flush_interval and (
            self._flush_task is None or self._flush_task.done()
        ):
            self._last_flush = mono
            self._flush_task = asyncio.get_running_loop().create_task(
                self.flush(),
                context=contextvars.Context(),  # not the request's id or trace
            )

    async def flush(self) -> None:
        """Write batched ``last_used`` times and usage counters; times a failed write took
        are written by the next flush."""
        pending, self._last_used = self._last_used, {}
        if pending:
            try:
                async with self.db.transaction() as conn:
                    # later times only: another replica may have written a newer one
                    await conn.execute_many(
                        "UPDATE api_keys SET last_used_at = ?"
                        " WHERE key_id = ? AND (last_used_at IS NULL OR last_used_at < ?)",
                        [(ts, key_id, ts) for key_id, ts in sorted(pending.items())],
                    )
            except Exception:
                for key_id, ts in pending.items():
                    self._last_used[key_id] = max(ts, self._last_used.get(key_id, ts))
                raise
        await self.usage.flush()

    # ---- owner grants (written by the reconcile loop) ---------------------------------

    async def put_grant(self, grant: OwnerGrant) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO owner_grants (owner, active, roles, scopes, is_org_admin,"
                " refreshed_at) VALUES (?,?,?,?,?,?) ON CONFLICT (owner) DO UPDATE SET"
                " active = excluded.active, roles = excluded.roles, scopes = excluded.scopes,"
                " is_org_admin = excluded.is_org_admin, refreshed_at = excluded.refreshed_at",
                (
                    grant.owner,
                    int(grant.active),
                    json.dumps(list(grant.roles)),
                    json.dumps(sorted(grant.scopes)),
                    int(grant.is_org_admin),
                    grant.refreshed_at,
                ),
            )

    async def get_grant(self, owner: str) -> OwnerGrant | None:
        row = await self.db.fetch_one("SELECT * FROM owner_grants WHERE owner = ?", (owner,))
        return None if row is None else _grant(row)

    # ---- helpers ---------------------------------------------------------------------

    async def _get(self, conn: Connection, organization: str, key_id: str) -> KeyRecord:
        row = await conn.fetch_one(
            "SELECT * FROM api_keys WHERE key_id = ? AND organization = ?",
            (key_id, organization),
        )
        if row is None:
            raise KeyNotFound(f"no key {key_id!r} in organization {organization!r}")
        return self._record(row, self.clock())

    @staticmethod
    def _record(row: Row, now: float) -> KeyRecord:
        grace = row["grace_until"]
        return KeyRecord(
            key_id=row["key_id"],
            organization=row["organization"],
            owner=row["owner"],
            owner_kind=PrincipalKind(row["owner_kind"]),
            name=row["name"],
            scopes=frozenset(json.loads(row["scopes"])),
            limits=Limits.model_validate_json(row["limits"]) if row["limits"] else None,
            created_at=row["created_at"],
            expires_at=row["expires_at"],
            revoked_at=row["revoked_at"],
            last_used_at=row["last_used_at"],
            rotated_at=row["rotated_at"],
            grace_until=grace if grace and grace > now else None,
            parent_key_id=row["parent_key_id"],
        )


def _grant(row: Row, prefix: str = "") -> OwnerGrant:
    """An ``owner_grants`` row, its columns named ``prefix + column`` (``g_`` in joins)."""
    return OwnerGrant(
        owner=row[f"{prefix}owner"],
        active=bool(row[f"{prefix}active"]),
        roles=tuple(json.loads(row[f"{prefix}roles"])),
        scopes=frozenset(json.loads(row[f"{prefix}scopes"])),
        is_org_admin=bool(row[f"{prefix}is_org_admin"]),
        refreshed_at=row[f"{prefix}refreshed_at"],
    )
