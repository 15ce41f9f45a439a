"""The gateway-facing endpoints, with Casdoor unreachable: verify serves from the store.

Every test runs on both store engines (SQLite, PostgreSQL): audit and usage included."""

from __future__ import annotations

import time
from pathlib import Path

from hanzo_contract.errors import ErrorBody, ErrorDetail
from hanzo_contract.principal import Limits, Principal
from hanzo_contract.verify import VERIFY_PATH, VerifyResponse
from iam_sidecar.keys.models import NewKey, OwnerGrant
from iam_sidecar.tenants.policy import TenantPolicy

from .helpers import StoreTarget, bearer, make_settings, running_app

PLAN = TenantPolicy(plan_limits={"acme": Limits(requests_per_minute=100, units_per_day=1000)})


async def test_verify_returns_principal_with_plan_and_key_limits(
    tmp_path: Path, store_target: StoreTarget
) -> None:
    settings = make_settings(tmp_path, **store_target.settings_overrides())
    async with running_app(settings, policy=PLAN, run_reconcile=False) as (_, state, client):
        plaintext, record = await state.keys.create(
            NewKey(
                organization="acme",
                owner="acme/alice",
                name="ci",
                scopes=["memory:read", "memory:write"],
                limits=Limits(requests_per_minute=5),
            )
        )
        await state.keys.put_grant(
            OwnerGrant(
                owner="acme/alice",
                active=True,
                roles=("reader",),
                scopes=frozenset({"memory:read"}),
                is_org_admin=True,
                refreshed_at=time.time(),
            )
        )
        response = await client.post(VERIFY_PATH, json={"key": plaintext}, headers=bearer(settings))
        assert response.status_code == 200, response.text
        answer = VerifyResponse.model_validate(response.json())
        assert answer.cache_ttl_seconds == settings.verify_cache_ttl_seconds
        assert answer.principal == Principal(
            organization="acme",
            subject="acme/alice",
            roles=("reader",),
            # the key asked for write, but the owner's roles now grant only read
            scopes=frozenset({"memory:read"}),
            key_id=record.key_id,
            is_org_admin=True,
            limits=Limits(requests_per_minute=5, units_per_day=1000),
            org_limits=Limits(requests_per_minute=100, units_per_day=1000),  # the plan
        )


async def test_verify_errors_are_precise(tmp_path: Path, store_target: StoreTarget) -> None:
    settings = make_settings(tmp_path, **store_target.settings_overrides())
    async with running_app(settings, run_reconcile=False) as (_, state, client):
        plaintext, record = await state.keys.create(
            NewKey(organization="acme", owner="acme/alice", name="ci", scopes=["memory:read"])
        )
        auth = bearer(settings)
        cases = [
            ({}, {"key": plaintext}, 401, "unauthenticated"),
            ({"Authorization": "Bearer wrong"}, {"key": plaintext}, 401, "unauthenticated"),
            (auth, {"key": "hk-nope"}, 401, "invalid_key"),
            (auth, {"key": plaintext, "extra": 1}, 400, "invalid_request"),
            (auth, {}, 400, "invalid_request"),
            (auth, {"key": "x" * 300}, 400, "invalid_request"),
        ]
        for headers, body, status, code in cases:
            response = await client.post(VERIFY_PATH, json=body, headers=headers)
            assert response.status_code == status, (body, response.text)
            assert response.json()["error"]["code"] == code
        bad_json = await client.post(VERIFY_PATH, content=b"{not json", headers=auth)
        assert bad_json.status_code == 400
        await state.keys.revoke("acme", record.key_id)
        revoked = await client.post(VERIFY_PATH, json={"key": plaintext}, headers=auth)
        assert revoked.status_code == 401
        assert revoked.json()["error"]["code"] == "revoked_key"
        assert plaintext not in revoked.text
        nowhere = await client.get("/v1/nowhere")
        assert nowhere.status_code == 404 and nowhere.json()["error"]["code"] == "not_found"


async def test_denials_are_audited_and_counted(tmp_path: Path, store_target: StoreTarget) -> None:
    settings = make_settings(tmp_path, **store_target.settings_overrides())
    async with running_app(settings, run_reconcile=False) as (_, state, client):
        report = {
            "status": 403,
            "reason": "missing scope memory:write",
            "organization": "acme",
            "subject": "acme/alice",
            "key_id": "abcdefghijkl",
            "method": "POST",
            "path": "/v1/memory/store",
            "client_ip": "127.0.0.1",
            "gateway": "nginx",
        }
        response = await client.post("/v1/audit/denials", json=report, headers=bearer(settings))
        assert response.status_code == 202, response.text
        unauth = await client.post("/v1/audit/denials", json=report)
        assert unauth.status_code == 401
        bad = await client.post(
            "/v1/audit/denials", json={**report, "status": 200}, headers=bearer(settings)
        )
        assert bad.status_code == 400
        events = await state.keys.audit.query(organization="acme", action="request.denied")
        assert len(events) == 1
        event = events[0]
        assert event.actor == "acme/alice" and event.outcome == "403:missing scope memory:write"
        assert event.target == "POST /v1/memory/store" and event.source == "127.0.0.1"
        await state.keys.flush()
        usage = {(r.level, r.subject): r.denials for r in await state.keys.usage.query("acme")}
        assert usage == {("org", "acme"): 1, ("user", "acme/alice"): 1, ("key", "abcdefghijkl"): 1}


async def test_ops_endpoints_with_casdoor_down(tmp_path: Path, store_target: StoreTarget) -> None:
    settings = make_settings(tmp_path, **store_target.settings_overrides())
    async with running_app(settings, run_reconcile=False) as (_, state, client):
        plaintext, _ = await state.keys.create(
            NewKey(organization="acme", owner="acme/alice", name="ci", scopes=["memory:read"])
        )
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["status"] == "degraded" and ready.json()["casdoor"] == "unreachable"
        ok = await client.post(VERIFY_PATH, json={"key": plaintext}, headers=bearer(settings))
        assert ok.status_code == 200
        metrics = (await client.get("/metrics")).text
        assert 'hanzo_sidecar_key_verify_total{outcome="ok"} 1.0' in metrics
        assert "hanzo_sidecar_casdoor_up 0.0" in metrics
        assert plaintext not in metrics


async def test_readyz_with_the_store_down_is_503_in_the_shared_error_body(
    tmp_path: Path, store_target: StoreTarget
) -> None:
    settings = make_settings(tmp_path, **store_target.settings_overrides())
    async with running_app(settings, run_reconcile=False) as (_, state, client):
        assert (await client.get("/readyz")).status_code == 200
        await state.keys.db.close()  # the store is gone: its connection no longer answers
        down = await client.get("/readyz", headers={"X-Request-Id": "ready-store-1"})
        assert down.status_code == 503
        assert ErrorBody.model_validate(down.json()).error == ErrorDetail(
            code="not_ready",
            message="the key store is unavailable",
            details={"store": down.json()["error"]["details"]["store"]},
            request_id="ready-store-1",
        )
        assert down.json()["error"]["details"]["store"]  # names the failure's type


async def test_reconcile_survives_casdoor_down_and_keeps_last_grants(tmp_path: Path) -> None:
    from iam_sidecar.reconcile import reconcile_once

    settings = make_settings(tmp_path)
    async with running_app(settings, run_reconcile=False) as (_, state, client):
        plaintext, _ = await state.keys.create(
            NewKey(organization="acme", owner="acme/alice", name="ci", scopes=["memory:read"])
        )
        grant = OwnerGrant(
            owner="acme/alice",
            active=True,
            scopes=frozenset({"memory:read"}),
            refreshed_at=time.time(),
        )
        await state.keys.put_grant(grant)
        result = await reconcile_once(state, tenant_step=None)
        assert result.error is not None and "unavailable" in result.error
        assert await state.keys.get_grant("acme/alice") == grant
        ok = await client.post(VERIFY_PATH, json={"key": plaintext}, headers=bearer(settings))
        assert ok.status_code == 200
        ready = (await client.get("/readyz")).json()
        assert ready["last_reconcile_error"] == result.error
        metrics = (await client.get("/metrics")).text
        assert 'hanzo_sidecar_reconcile_runs_total{outcome="casdoor_down"} 1.0' in metrics


async def test_usage_reports_from_plugins_add_up_per_day(
    tmp_path: Path, store_target: StoreTarget
) -> None:
    settings = make_settings(tmp_path, **store_target.settings_overrides())
    async with running_app(settings, run_reconcile=False) as (_, state, client):
        batch = {
            "entries": [
                {"organization": "acme", "subject": "acme/alice", "key_id": "k1", "requests": 7},
                {"organization": "acme", "subject": "acme/bob", "requests": 3, "denials": 1},
            ]
        }
        for _ in range(2):
            response = await client.post("/v1/usage/report", json=batch, headers=bearer(settings))
            assert response.status_code == 202, response.text
        bad = await client.post(
            "/v1/usage/report",
            json={"entries": [{"organization": "acme", "requests": -1}]},
            headers=bearer(settings),
        )
        assert bad.status_code == 400
        assert (await client.post("/v1/usage/report", json=batch)).status_code == 401
        rows = {
            (r.level, r.subject): (r.requests, r.denials)
            for r in await state.keys.usage.query("acme")
        }
        assert rows == {
            ("org", "acme"): (20, 2),
            ("user", "acme/alice"): (14, 0),
            ("key", "k1"): (14, 0),
            ("user", "acme/bob"): (6, 2),
        }
        assert await state.keys.usage.query("globex") == []
