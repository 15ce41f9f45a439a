"""No secret (API key, client secret, password, verify token) in any log line or audit row."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from hanzo_contract.verify import RESOLVE_PATH, VERIFY_PATH
from hanzo_stack.casdoor.server import CasdoorServer
from iam_sidecar.http.app import build_app
from iam_sidecar.keys.models import NewKey
from iam_sidecar.tenants.apply import apply_plan
from iam_sidecar.tenants.loader import load_tenant_file

from .helpers import SEED_PASSWORDS, bearer, casdoor_settings, running_app, unique_example


def _dump_tables(db_path: Path) -> str:
    with sqlite3.connect(db_path) as conn:
        rows = []
        for table in ("audit_log", "usage_daily", "owner_grants", "api_keys"):
            rows += [repr(r) for r in conn.execute(f"SELECT * FROM {table}")]  # noqa: S608
    return "\n".join(rows)


async def test_no_secret_in_logs_or_audit(
    casdoor: CasdoorServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    path, names = unique_example(tmp_path)
    acme = names["acme"]
    settings = casdoor_settings(tmp_path / "state", casdoor, tenant_file=path)
    secrets: list[str] = [casdoor.client_secret, *SEED_PASSWORDS.values()]
    assert settings.verify_token is not None and settings.key_hash_secret is not None
    secrets += [settings.verify_token.get_secret_value()]
    secrets += [settings.key_hash_secret.get_secret_value()]
    async with running_app(settings, app=build_app(settings)) as (_, state, client):
        await apply_plan(
            state.casdoor, load_tenant_file(path), db=state.keys.db, env=SEED_PASSWORDS
        )
        # a service application is never a Casdoor application: there is no secret to leak
        assert await state.casdoor.get_object("application", "admin", f"{acme}-indexer") is None
        key, record = await state.issuer.issue(
            NewKey(organization=acme, owner=f"{acme}/alice", name="k", scopes=["memory:read"])
        )
        rotated = await state.keys.rotate(acme, record.key_id, grace_seconds=60)
        secrets += [key, rotated]
        auth = bearer(settings)
        for candidate in (key, rotated, key + "x", "hk-" + key[3:15] + "_" + "A" * 43):
            response = await client.post(VERIFY_PATH, json={"key": candidate}, headers=auth)
            assert key not in response.text and rotated not in response.text
        await client.post(VERIFY_PATH, json={"key": key}, headers={"Authorization": "Bearer x"})
        await client.post(
            "/v1/audit/denials",
            json={
                "status": 403,
                "reason": f"bad key {key}",
                "organization": acme,
                "subject": f"{acme}/alice",
            },
            headers=auth,
        )
        await client.post(
            RESOLVE_PATH,
            json={"kind": "application", "client_id": casdoor.client_id},
            headers=auth,
        )
        await state.keys.revoke(acme, record.key_id)
        await state.keys.flush()
        events = await state.keys.audit.query(organization=acme, limit=1000)
        assert {"key.create", "key.rotate", "key.revoke", "request.denied"} <= {
            e.action for e in events
        }
    assert settings.db_path is not None
    captured = "\n".join(
        [r.getMessage() for r in caplog.records] + [r.exc_text or "" for r in caplog.records]
    )
    assert captured, "expected some log lines to scan"
    stored = _dump_tables(settings.db_path)
    for secret in secrets:
        assert secret not in captured
        assert secret not in stored
    # the key's secret half specifically (the id part is a public identifier)
    assert key.split("_", 1)[1] not in stored and rotated.split("_", 1)[1] not in stored
