"""Two sidecar processes on one PostgreSQL, serving at once, with the real Casdoor.

What replicas must agree on, through their HTTP APIs: a key minted on one verifies on the
other at once; a revocation on one is refused by the other on its next lookup (sidecars keep
no verify cache: only gateways do, for ``verify_cache_ttl_seconds``); concurrent mints
through both respect the per-owner key cap exactly; both write one audit log.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from hanzo_contract.assertion import AssertionSigner, ensure_keypair
from hanzo_contract.verify import VERIFY_PATH
from hanzo_stack.casdoor.server import CasdoorServer
from hanzo_stack.postgres import Database, PostgresServer
from hanzo_stack.servers import SidecarServer
from tests.support.assertions import bind_assertion

from .test_grants_http import ADMIN_SCOPES, _tenant, _user

CAP = 4
BURST = 12


@pytest.fixture
def database(postgres: PostgresServer) -> Iterator[Database]:
    name = f"sidecar_replicas_{uuid.uuid4().hex[:8]}"
    yield postgres.create_database(name, roles="hanzo_sidecar_test")
    postgres.drop_database(name)


@pytest.fixture
async def replicas(
    casdoor: CasdoorServer, database: Database, tmp_path: Path
) -> Iterator[tuple[list[SidecarServer], Path, AssertionSigner]]:
    tenant_file, names = await _tenant(casdoor, tmp_path)
    state = tmp_path / "shared-state"  # one assertion key pair, as one gateway signs for both
    private, _ = ensure_keypair(state)
    env = {
        "HANZO_STATE_DIR": str(state),
        "HANZO_SIDECAR_STATE_DIR": str(state),
        "HANZO_SIDECAR_DATABASE_URL": database.app_dsn,
        "HANZO_SIDECAR_DATABASE_MIGRATE_URL": database.owner_dsn,
        "HANZO_SIDECAR_KEY_HASH_SECRET": secrets.token_urlsafe(32),
        "HANZO_SIDECAR_VERIFY_TOKEN": secrets.token_urlsafe(32),
        "HANZO_SIDECAR_CASDOOR_URL": casdoor.url,
        "HANZO_SIDECAR_CASDOOR_CLIENT_ID": casdoor.client_id,
        "HANZO_SIDECAR_CASDOOR_CLIENT_SECRET": casdoor.client_secret,
        "HANZO_SIDECAR_TENANT_FILE": str(tenant_file),
        "HANZO_SIDECAR_RECONCILE_APPLY": "false",
        "HANZO_SIDECAR_MAX_KEYS_PER_OWNER": str(CAP),
    }
    servers = [SidecarServer(tmp_path / f"sidecar-{i}", env) for i in range(2)]
    try:
        for server in servers:
            server.start()
        yield servers, names["acme"], AssertionSigner(private.read_bytes())
    finally:
        for server in servers:
            server.stop()


async def test_two_replicas_on_one_postgres_agree(replicas, database: Database) -> None:
    servers, acme, signer = replicas
    token = {"Authorization": f"Bearer {servers[0].env['HANZO_SIDECAR_VERIFY_TOKEN']}"}
    alice = _user(signer, acme, "alice", ADMIN_SCOPES)
    clients = [
        httpx.AsyncClient(base_url=s.url, event_hooks={"request": [bind_assertion]}, timeout=30)
        for s in servers
    ]
    try:
        a, b = clients
        minted = await a.post("/v1/keys", json={"name": "first", "scopes": ["memory:read"]},
                              headers=alice)  # fmt: skip
        assert minted.status_code == 201, minted.text
        key, key_id = minted.json()["key"], minted.json()["record"]["key_id"]

        # minted on A, verified on B at once
        answer = await b.post(VERIFY_PATH, json={"key": key}, headers=token)
        assert answer.status_code == 200, answer.text
        assert answer.json()["principal"]["key_id"] == key_id

        # revoked on A, refused by B on its very next lookup
        revoked = await a.delete(f"/v1/keys/{key_id}", headers=alice)
        assert revoked.status_code == 200, revoked.text
        refused = await b.post(VERIFY_PATH, json={"key": key}, headers=token)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "revoked_key"

        # BURST mints at once, alternating replicas: exactly CAP succeed, the rest are refused
        async def mint(i: int) -> httpx.Response:
            body = {"name": f"burst-{i}", "scopes": ["memory:read"]}
            return await clients[i % 2].post("/v1/keys", json=body, headers=alice)

        answers = await asyncio.gather(*(mint(i) for i in range(BURST)))
        statuses = sorted(r.status_code for r in answers)
        assert statuses == [201] * CAP + [409] * (BURST - CAP), [r.text for r in answers]
        assert {r.json()["error"]["code"] for r in answers if r.status_code == 409} == {
            "too_many_keys"
        }
        for client in clients:  # both replicas list the same live keys
            listed = await client.get("/v1/keys", headers=alice)
            live = [k for k in listed.json()["keys"] if k["state"] == "active"]
            assert len(live) == CAP, listed.text
    finally:
        for client in clients:
            await client.aclose()

    # one audit log: both replicas' creations, and the refusals, in it
    async with await psycopg.AsyncConnection.connect(database.owner_dsn) as conn:
        cur = await conn.execute(
            "SELECT action, outcome, COUNT(*) FROM audit_log WHERE organization = %s"
            " GROUP BY action, outcome",
            (acme,),
        )
        counts = {(action, outcome): n for action, outcome, n in await cur.fetchall()}
    assert counts.pop(("key.create", "ok")) == 1 + CAP
    assert counts.pop(("key.revoke", "ok")) == 1
    assert [(action, n) for (action, _), n in counts.items()] == [("key.create", BURST - CAP)]
