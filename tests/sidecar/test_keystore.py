"""The key store on real SQLite and real PostgreSQL: lifecycle, constant-time lookups, no
plaintext at rest, migrations, an audit log that refuses change.

Tests taking ``store`` or ``store_target`` run on both engines (``conftest.py``)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hanzo_contract.apikey import generate_key, parse_key_id
from hanzo_contract.principal import Limits, PrincipalKind
from iam_sidecar.db.migrations import POSTGRES, SQLITE
from iam_sidecar.errors import (
    DuplicateKeyName,
    ExpiredKey,
    InvalidKey,
    InvalidRequest,
    KeyNotActive,
    KeyNotFound,
    ParentKeyInactive,
    RevokedKey,
)
from iam_sidecar.keys.issuer import KeyIssuer
from iam_sidecar.keys.models import KeyState, NewKey, OwnerGrant
from iam_sidecar.keys.principals import key_principal
from iam_sidecar.keys.store import KeyStore

from .helpers import ManualClock, StoreTarget


def _db_files(directory: Path) -> dict[str, bytes]:
    """The database, its WAL and shared-memory files, as bytes."""
    found = {p.name: p.read_bytes() for p in directory.glob("keys.db*")}
    assert "keys.db" in found
    return found


async def _new(store: KeyStore, **kw: object) -> tuple[str, object]:
    args: dict[str, object] = {
        "organization": "acme",
        "owner": "acme/alice",
        "name": "laptop",
        "scopes": ["memory:read", "memory:write"],
    }
    args.update(kw)
    return await store.create(NewKey(**args))  # type: ignore[arg-type]


async def test_create_then_verify_returns_the_record(store: KeyStore) -> None:
    plaintext, record = await _new(store, limits=Limits(requests_per_minute=7))
    assert plaintext.startswith("hk-") and parse_key_id(plaintext) == record.key_id
    got = await store.verify(plaintext)
    assert got.key_id == record.key_id
    assert got.owner == "acme/alice" and got.organization == "acme"
    assert got.scopes == {"memory:read", "memory:write"}
    assert got.limits == Limits(requests_per_minute=7)
    assert got.state() is KeyState.ACTIVE


async def test_plaintext_never_reaches_disk(
    store: KeyStore, store_target: StoreTarget, tmp_path: Path
) -> None:
    plaintext, record = await _new(store)
    await store.verify(plaintext)
    await store.flush()
    secret_part = plaintext.split("_", 1)[1]
    if store_target.engine == "sqlite":
        for name, data in _db_files(tmp_path).items():
            assert secret_part.encode() not in data, name
            assert plaintext.encode() not in data, name
    else:  # every row of every table, as text
        async with await psycopg.AsyncConnection.connect(str(store_target.migrate_dsn)) as conn:
            for table in ("api_keys", "owner_grants", "audit_log", "usage_daily"):
                cur = await conn.execute(f"SELECT t::text FROM {table} t")  # noqa: S608
                dump = " ".join(row[0] for row in await cur.fetchall())
                assert secret_part not in dump and plaintext not in dump, table
    listed = [r.public() for r in await store.list("acme")]
    assert listed[0]["prefix"] == f"hk-{record.key_id}"
    assert secret_part not in repr(listed)


async def test_unknown_malformed_and_tampered_keys_are_invalid(store: KeyStore) -> None:
    plaintext, _ = await _new(store)
    forged, _ = generate_key(parse_key_id(plaintext))  # right id, wrong secret
    for bad in ("", "hk-", "not-a-key", plaintext + "x", forged, generate_key()[0]):
        with pytest.raises(InvalidKey):
            await store.verify(bad)


async def test_rotate_keeps_old_valid_for_grace_only(store: KeyStore, clock: ManualClock) -> None:
    old, record = await _new(store)
    new = await store.rotate("acme", record.key_id, grace_seconds=0.6)
    assert new != old and parse_key_id(new) == record.key_id
    assert (await store.verify(old)).key_id == record.key_id
    assert (await store.verify(new)).key_id == record.key_id
    shown = await store.show("acme", record.key_id)
    assert shown.grace_until is not None and shown.rotated_at is not None
    clock.advance(0.8)
    with pytest.raises(ExpiredKey):
        await store.verify(old)
    assert (await store.verify(new)).key_id == record.key_id


async def test_rotate_twice_ends_the_oldest_secret_at_once(store: KeyStore) -> None:
    first, record = await _new(store)
    second = await store.rotate("acme", record.key_id, grace_seconds=60)
    third = await store.rotate("acme", record.key_id, grace_seconds=60)
    with pytest.raises(InvalidKey):
        await store.verify(first)
    assert (await store.verify(second)).key_id == record.key_id
    assert (await store.verify(third)).key_id == record.key_id


async def test_revoke_kills_current_and_in_grace_secrets(store: KeyStore) -> None:
    old, record = await _new(store)
    new = await store.rotate("acme", record.key_id, grace_seconds=60)
    revoked = await store.revoke("acme", record.key_id)
    assert revoked.state() is KeyState.REVOKED
    for key in (old, new):
        with pytest.raises(RevokedKey):
            await store.verify(key)
    with pytest.raises(KeyNotActive):
        await store.rotate("acme", record.key_id, grace_seconds=1)
    again = await store.revoke("acme", record.key_id)  # idempotent
    assert again.revoked_at == revoked.revoked_at


async def test_a_key_revoked_while_it_asks_rotates_nothing(store: KeyStore) -> None:
    """A key with keys:manage rotates another key while an admin revokes it: its live
    state is read in the rotation's own transaction, so the revoked key's holder never
    gets the other key's new secret (checked before, it was still active)."""
    scopes = ["keys:manage", "memory:read"]
    _, asking = await _new(store, name="manager", scopes=scopes)
    other, target = await _new(store, name="other", scopes=scopes)  # not its child
    issuer = KeyIssuer(store, resolver=None)  # type: ignore[arg-type]  # rotation asks no Casdoor
    caller = key_principal(asking, None, Limits())
    rotated, _ = await asyncio.gather(
        issuer.rotate("acme", target.key_id, 0, caller=caller, actor="acme/alice"),
        store.revoke("acme", asking.key_id, actor="admin"),
        return_exceptions=True,
    )
    assert isinstance(rotated, ParentKeyInactive), type(rotated).__name__  # never the secret
    assert (await store.verify(other)).key_id == target.key_id  # the old secret stands
    with pytest.raises(ParentKeyInactive):  # and after the revocation, plainly
        await store.rotate("acme", target.key_id, 0, by_key=asking.key_id)


async def test_expired_key_is_refused(store: KeyStore, clock: ManualClock) -> None:
    plaintext, record = await _new(store, expires_at=clock() + 0.4)
    assert (await store.verify(plaintext)).key_id == record.key_id
    clock.advance(0.6)
    with pytest.raises(ExpiredKey):
        await store.verify(plaintext)
    assert (await store.show("acme", record.key_id)).state(clock()) is KeyState.EXPIRED
    with pytest.raises(InvalidRequest):
        await _new(store, name="past", expires_at=clock() - 1)


async def test_other_organizations_keys_are_not_found(store: KeyStore) -> None:
    _, record = await _new(store)
    for call in (
        store.show("globex", record.key_id),
        store.revoke("globex", record.key_id),
        store.rotate("globex", record.key_id, 10),
    ):
        with pytest.raises(KeyNotFound):
            await call
    assert await store.list("globex") == []


async def test_duplicate_names_per_owner_refused_bad_input_rejected(store: KeyStore) -> None:
    await _new(store)
    with pytest.raises(DuplicateKeyName):
        await _new(store)
    await _new(store, owner="acme/bob")  # same name, other owner: fine
    for bad in (
        {"scopes": ["memory"]},
        {"scopes": ["Memory:Read"]},
        {"owner": "globex/alice"},
        {"owner": "alice"},
        {"name": ""},
        {"name": "x" * 101},
    ):
        with pytest.raises(InvalidRequest):
            await _new(store, **({"name": "other"} | bad))


async def test_inactive_owner_grant_stops_verification(store: KeyStore) -> None:
    plaintext, _ = await _new(store)
    grant = OwnerGrant(
        owner="acme/alice", active=True, scopes=frozenset({"memory:read"}), refreshed_at=time.time()
    )
    await store.put_grant(grant)
    _, got = await store.verify_with_grant(plaintext)
    assert got is not None and got.scopes == {"memory:read"}
    await store.put_grant(grant.model_copy(update={"active": False}))
    with pytest.raises(InvalidKey):
        await store.verify(plaintext)


async def test_last_used_is_batched_not_written_per_request(store_target: StoreTarget) -> None:
    store = await store_target.open(b"s" * 32, flush_interval=3600)
    try:
        plaintext, record = await _new(store)
        for _ in range(50):
            await store.verify(plaintext)
        assert (await store.show("acme", record.key_id)).last_used_at is None
        await store.flush()
        assert (await store.show("acme", record.key_id)).last_used_at is not None
        rows = await store.usage.query("acme")
        by_level = {r.level: (r.verifications, r.requests) for r in rows}
        assert by_level == {"org": (50, 0), "user": (50, 0), "key": (50, 0)}
    finally:
        await store.close()


async def test_a_write_cancelled_as_it_begins_leaves_the_connection_clean(tmp_path: Path) -> None:
    """Shutdown cancels a loop whose write is starting: its BEGIN still runs on the
    database's thread. The transaction is rolled back, and the next writer (the final
    flush) writes; before, it failed inside a transaction nobody ended."""
    store = await KeyStore.open(tmp_path / "keys.db", b"s" * 32)
    store.usage.count_denial("acme", "acme/alice", None)
    cut = asyncio.create_task(store.flush())
    await asyncio.sleep(0)  # it has taken the counters and waits on BEGIN
    cut.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cut
    store.usage.count_denial("acme", "acme/alice", None)
    await store.close()
    again = await KeyStore.open(tmp_path / "keys.db", b"s" * 32)
    assert {r.level: r.denials for r in await again.usage.query("acme")}["user"] >= 1
    await again.close()


async def test_counters_a_failed_flush_took_are_written_by_the_next(tmp_path: Path) -> None:
    """A flush the disk refuses (here: the connection made read-only) keeps what it took;
    the next flush writes it, once."""
    store = await KeyStore.open(tmp_path / "keys.db", b"s" * 32)
    for _ in range(3):
        store.usage.count_denial("acme", "acme/alice", None)
    await store.db.conn.execute("PRAGMA query_only = ON")
    with pytest.raises(sqlite3.Error):
        await store.flush()
    await store.db.conn.execute("PRAGMA query_only = OFF")
    store.usage.count_denial("acme", "acme/alice", None)
    await store.close()
    again = await KeyStore.open(tmp_path / "keys.db", b"s" * 32)
    assert {r.level: r.denials for r in await again.usage.query("acme")}["user"] == 4
    await again.close()


async def test_sqlite_schema_is_versioned_wal_and_reopen_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    for _ in range(2):
        store = await KeyStore.open(path, b"s" * 32)
        assert await store.db.journal_mode() == "wal"
        await store.close()
    with sqlite3.connect(path) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_version")]
    assert versions == list(range(1, len(SQLITE) + 1))


async def test_postgres_schema_is_versioned_and_reopen_is_idempotent(postgres, tmp_path) -> None:
    """Two opens (as two replicas would) migrate once; the serving role gets no DDL."""
    database = postgres.create_database("sidecar_migrations", roles="hanzo_sidecar_test")
    target = StoreTarget("postgres", database.app_dsn, database.owner_dsn)
    try:
        for _ in range(2):
            await (await target.open(b"s" * 32)).close()
        async with await psycopg.AsyncConnection.connect(database.app_dsn) as conn:
            cur = await conn.execute("SELECT version FROM schema_version ORDER BY version")
            assert [row[0] for row in await cur.fetchall()] == list(range(1, len(POSTGRES) + 1))
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await conn.execute("ALTER TABLE api_keys ADD COLUMN x TEXT")
    finally:
        postgres.drop_database("sidecar_migrations")


def test_both_engines_have_the_same_schema_versions() -> None:
    assert len(SQLITE) == len(POSTGRES)


async def test_audit_log_is_append_only(store: KeyStore, store_target: StoreTarget) -> None:
    await _new(store)
    events = await store.audit.query(organization="acme")
    assert [e.action for e in events] == ["key.create"]
    refused = sqlite3.DatabaseError if store_target.engine == "sqlite" else psycopg.Error
    for sql in ("UPDATE audit_log SET outcome = 'x'", "DELETE FROM audit_log"):
        with pytest.raises(refused, match=r"append-only|permission denied"):
            async with store.db.transaction() as conn:
                await conn.execute(sql)
    if store_target.engine == "postgres":  # the owner too is refused, by the trigger
        async with await psycopg.AsyncConnection.connect(str(store_target.migrate_dsn)) as conn:
            for sql in ("UPDATE audit_log SET outcome = 'x'", "TRUNCATE audit_log"):
                with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                    await conn.execute(sql)
                await conn.rollback()
    assert [e.outcome for e in await store.audit.query(organization="acme")] == ["ok"]


async def test_application_owner_kind_round_trips(store: KeyStore) -> None:
    plaintext, _ = await _new(store, owner="acme/indexer", owner_kind=PrincipalKind.APPLICATION)
    assert (await store.verify(plaintext)).owner_kind is PrincipalKind.APPLICATION


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(garbage=st.text(max_size=120))
async def test_arbitrary_strings_never_verify(store: KeyStore, garbage: str) -> None:
    with pytest.raises(InvalidKey):
        await store.verify(garbage)


async def test_sqlite_migration_from_version_1_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for statement in SQLITE[0]:
            conn.execute(statement)
        conn.execute("INSERT INTO schema_version VALUES (1)")
        conn.execute(
            "INSERT INTO usage_daily (day, level, subject, organization, requests, denials)"
            " VALUES ('2026-01-01', 'org', 'acme', 'acme', 5, 1)"
        )
    store = await KeyStore.open(path, b"s" * 32)
    try:
        rows = await store.usage.query("acme")
        assert [(r.requests, r.denials, r.verifications) for r in rows] == [(5, 1, 0)]
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_version")]
        assert versions == list(range(1, len(SQLITE) + 1))
