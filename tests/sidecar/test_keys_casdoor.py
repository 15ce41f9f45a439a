"""API keys with the real Casdoor in the loop: scopes from roles, lifecycle, bounds."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx

from hanzo_contract.assertion import (
    MEMORY_AUDIENCE,
    SIDECAR_AUDIENCE,
    AssertionSigner,
    generate_keypair,
)
from hanzo_contract.headers import ASSERTION
from hanzo_contract.principal import Limits, Principal, PrincipalKind
from hanzo_contract.verify import RESOLVE_PATH, VERIFY_PATH
from hanzo_stack.casdoor.server import CasdoorServer
from iam_sidecar.http.app import build_app
from iam_sidecar.keys.models import NewKey
from iam_sidecar.settings import SidecarSettings
from iam_sidecar.tenants.apply import apply_plan
from iam_sidecar.tenants.loader import load_tenant_file
from tests.support.assertions import placeholder
from tests.support.casdoor_admin import admin_client

from .helpers import (
    SEED_PASSWORDS,
    ManualClock,
    bearer,
    casdoor_on_each_engine,  # noqa: F401 (fixture "casdoor": each engine)
    casdoor_settings,
    running_app,
    signer_for,
    unique_example,
)

RECONCILE_SECONDS = 1.0


async def _tenant(casdoor: CasdoorServer, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    path, names = unique_example(tmp_path)
    async with admin_client(casdoor) as client:
        await apply_plan(client, load_tenant_file(path), env=SEED_PASSWORDS)
    return path, names


def _settings(casdoor: CasdoorServer, tmp_path: Path, tenant_file: Path) -> SidecarSettings:
    # reconcile refreshes owners but does not re-apply the file: the tests edit Casdoor
    return casdoor_settings(
        tmp_path / "state",
        casdoor,
        tenant_file=tenant_file,
        reconcile_apply=False,
        reconcile_interval_seconds=RECONCILE_SECONDS,
        role_cache_ttl_seconds=0.5,
    )


def _as(signer: AssertionSigner, org: str, user: str, scopes: set[str]) -> dict[str, str]:
    principal = Principal(organization=org, subject=f"{org}/{user}", scopes=frozenset(scopes))
    return {ASSERTION: placeholder(
        lambda method, path: signer.sign(
            principal, audience=SIDECAR_AUDIENCE, method=method, path=path
        )
    )}  # fmt: skip


async def _verify(client: httpx.AsyncClient, settings: SidecarSettings, key: str) -> httpx.Response:
    return await client.post(VERIFY_PATH, json={"key": key}, headers=bearer(settings))


async def test_key_lifecycle_with_scopes_from_casdoor_roles(
    casdoor: CasdoorServer, tmp_path: Path
) -> None:
    path, names = await _tenant(casdoor, tmp_path)
    acme = names["acme"]
    settings = _settings(casdoor, tmp_path, path)
    signer = signer_for(settings)
    bob = _as(signer, acme, "bob", {"memory:read"})
    clock = ManualClock()  # grace and expiry below move it instead of sleeping
    app = build_app(settings, clock=clock)
    async with running_app(settings, app=app) as (_, _state, client):
        created = await client.post(
            "/v1/keys", json={"name": "laptop", "scopes": ["memory:read"]}, headers=bob
        )
        assert created.status_code == 201, created.text
        key = created.json()["key"]
        key_id = created.json()["record"]["key_id"]
        assert created.json()["record"]["owner"] == f"{acme}/bob"

        ok = await _verify(client, settings, key)
        assert ok.status_code == 200, ok.text
        principal = Principal.model_validate(ok.json()["principal"])
        assert principal.subject == f"{acme}/bob" and principal.roles == ("reader",)
        assert principal.scopes == {"memory:read"} and principal.key_id == key_id
        assert principal.limits == Limits(  # the "pro" plan of the tenant file
            requests_per_minute=600, units_per_day=100000, units_per_month=2000000
        )

        # scope escalation: bob's reader role does not grant memory:write
        escalate = await client.post(
            "/v1/keys", json={"name": "more", "scopes": ["memory:write"]}, headers=bob
        )
        assert escalate.status_code == 403
        assert escalate.json()["error"]["code"] == "scope_escalation"
        assert escalate.json()["error"]["details"]["excess_scopes"] == ["memory:write"]

        # rotate: both valid during grace, old invalid after
        rotated = await client.post(
            f"/v1/keys/{key_id}/rotate", json={"grace_seconds": 1.0}, headers=bob
        )
        assert rotated.status_code == 200, rotated.text
        new_key = rotated.json()["key"]
        assert (await _verify(client, settings, key)).status_code == 200
        assert (await _verify(client, settings, new_key)).status_code == 200
        clock.advance(1.2)
        old = await _verify(client, settings, key)
        assert old.status_code == 401 and old.json()["error"]["code"] == "expired_key"
        assert (await _verify(client, settings, new_key)).status_code == 200

        # revoke: invalid at once
        revoked = await client.delete(f"/v1/keys/{key_id}", headers=bob)
        assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"
        gone = await _verify(client, settings, new_key)
        assert gone.status_code == 401 and gone.json()["error"]["code"] == "revoked_key"

        # expiry
        short = await client.post(
            "/v1/keys",
            json={"name": "short", "scopes": ["memory:read"], "expires_in_seconds": 0.5},
            headers=bob,
        )
        assert short.status_code == 201
        clock.advance(0.7)
        expired = await _verify(client, settings, short.json()["key"])
        assert expired.status_code == 401 and expired.json()["error"]["code"] == "expired_key"

        listed = await client.get("/v1/keys", headers=bob)
        states = {k["name"]: k["state"] for k in listed.json()["keys"]}
        assert states == {"laptop": "revoked", "short": "expired"}

        # duplicate names are refused with 409
        dup = await client.post(
            "/v1/keys", json={"name": "laptop", "scopes": ["memory:read"]}, headers=bob
        )
        assert dup.status_code == 409 and dup.json()["error"]["code"] == "duplicate_key_name"


async def test_unknown_org_or_user_is_refused(casdoor: CasdoorServer, tmp_path: Path) -> None:
    path, names = await _tenant(casdoor, tmp_path)
    acme = names["acme"]
    settings = _settings(casdoor, tmp_path, path)
    async with running_app(settings, app=build_app(settings)) as (_, state, _client):
        for org, owner in ((acme, f"{acme}/nobody"), ("no-such-org-x", "no-such-org-x/alice")):
            try:
                await state.issuer.issue(
                    NewKey(organization=org, owner=owner, name="k", scopes=["memory:read"])
                )
            except Exception as exc:
                assert getattr(exc, "code", None) == "unknown_principal", exc
                assert getattr(exc, "status", None) == 404
            else:
                raise AssertionError(f"key created for {owner}")
        assert await state.keys.list(acme) == []


async def _wait_until(predicate: Any, limit: float) -> float:
    """Seconds until ``await predicate()`` is true; fails after ``limit`` seconds."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if await predicate():
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met within {limit}s")


async def test_role_taken_away_in_casdoor_drops_scope_within_bound(
    casdoor: CasdoorServer, tmp_path: Path
) -> None:
    path, names = await _tenant(casdoor, tmp_path)
    acme = names["acme"]
    settings = _settings(casdoor, tmp_path, path)
    async with running_app(settings, app=build_app(settings)) as (_, state, client):
        key, _ = await state.issuer.issue(
            NewKey(
                organization=acme,
                owner=f"{acme}/alice",
                name="admin-key",
                scopes=["memory:read", "memory:write", "keys:manage"],
            )
        )
        first = await _verify(client, settings, key)
        assert set(first.json()["principal"]["scopes"]) == {
            "memory:read",
            "memory:write",
            "keys:manage",
        }
        async with admin_client(casdoor) as cd:
            admin = await cd.get_role(acme, "admin")
            reader = await cd.get_role(acme, "reader")
            assert admin is not None and reader is not None
            admin["users"] = []
            reader["users"] = [*reader["users"], f"{acme}/alice"]
            await cd.update_object("role", acme, "reader", reader)
            await cd.update_object("role", acme, "admin", admin)

        async def dropped() -> bool:
            answer = await _verify(client, settings, key)
            return set(answer.json()["principal"]["scopes"]) == {"memory:read"}

        elapsed = await _wait_until(dropped, limit=RECONCILE_SECONDS + 3.0)
        # documented bound: one reconcile interval plus one Casdoor round per owner
        assert elapsed <= RECONCILE_SECONDS + 1.5, elapsed
        print(f"role removal reached verify after {elapsed:.2f}s (interval {RECONCILE_SECONDS}s)")


async def test_disabled_or_deleted_user_keys_stop_verifying(
    casdoor: CasdoorServer, tmp_path: Path
) -> None:
    path, names = await _tenant(casdoor, tmp_path)
    acme, globex = names["acme"], names["globex"]
    settings = _settings(casdoor, tmp_path, path)
    async with running_app(settings, app=build_app(settings)) as (_, state, client):
        carol_key, _ = await state.issuer.issue(
            NewKey(organization=globex, owner=f"{globex}/carol", name="k", scopes=["memory:read"])
        )
        bob_key, _ = await state.issuer.issue(
            NewKey(organization=acme, owner=f"{acme}/bob", name="k", scopes=["memory:read"])
        )
        assert (await _verify(client, settings, carol_key)).status_code == 200
        assert (await _verify(client, settings, bob_key)).status_code == 200
        async with admin_client(casdoor) as cd:
            carol = await cd.get_user(globex, "carol")
            assert carol is not None
            carol["isForbidden"] = True
            await cd.update_object("user", globex, "carol", carol)
            bob = await cd.get_user(acme, "bob")
            assert bob is not None
            await cd.delete_object("user", bob)

        async def both_refused() -> bool:
            a = await _verify(client, settings, carol_key)
            b = await _verify(client, settings, bob_key)
            return a.status_code == 401 and b.status_code == 401

        elapsed = await _wait_until(both_refused, limit=RECONCILE_SECONDS + 3.0)
        assert elapsed <= RECONCILE_SECONDS + 1.5, elapsed
        refused = await _verify(client, settings, carol_key)
        assert refused.json()["error"]["code"] == "invalid_key"


async def test_self_service_is_confined_to_own_org_and_own_keys(
    casdoor: CasdoorServer, tmp_path: Path
) -> None:
    path, names = await _tenant(casdoor, tmp_path)
    acme, globex = names["acme"], names["globex"]
    settings = _settings(casdoor, tmp_path, path)
    signer = signer_for(settings)
    alice = _as(signer, acme, "alice", {"keys:manage", "memory:read", "memory:write"})
    bob = _as(signer, acme, "bob", {"memory:read"})
    carol = _as(signer, globex, "carol", {"memory:read", "keys:manage"})
    async with running_app(settings, app=build_app(settings)) as (_, _state, client):
        for_bob = await client.post(
            "/v1/keys",
            json={"name": "from-admin", "scopes": ["memory:read"], "owner": f"{acme}/bob"},
            headers=alice,
        )
        assert for_bob.status_code == 201, for_bob.text
        alices = await client.post(
            "/v1/keys",
            json={"name": "mine", "scopes": ["memory:read", "memory:write"]},
            headers=alice,
        )
        assert alices.status_code == 201, alices.text
        alice_key_id = alices.json()["record"]["key_id"]
        bob_key_id = for_bob.json()["record"]["key_id"]

        # bob sees only his own key; alice's is 404 to him, as if it did not exist
        bob_list = await client.get("/v1/keys", headers=bob)
        assert [k["key_id"] for k in bob_list.json()["keys"]] == [bob_key_id]
        for method, url in (
            ("GET", f"/v1/keys/{alice_key_id}"),
            ("DELETE", f"/v1/keys/{alice_key_id}"),
            ("POST", f"/v1/keys/{alice_key_id}/rotate"),
        ):
            denied = await client.request(method, url, headers=bob, json={})
            assert denied.status_code == 404, (method, url, denied.text)
            assert denied.json()["error"]["code"] == "key_not_found"
        # bob may not mint keys for others
        other = await client.post(
            "/v1/keys",
            json={"name": "x", "scopes": ["memory:read"], "owner": f"{acme}/alice"},
            headers=bob,
        )
        assert other.status_code == 404
        # another tenant's manager: acme ids do not exist for it
        assert (await client.get(f"/v1/keys/{bob_key_id}", headers=carol)).status_code == 404
        assert (await client.get("/v1/keys", headers=carol)).json()["keys"] == []
        cross = await client.post(
            "/v1/keys",
            json={"name": "x", "scopes": ["memory:read"], "owner": f"{acme}/bob"},
            headers=carol,
        )
        assert cross.status_code == 404 and cross.json()["error"]["code"] == "unknown_principal"
        # the org's manager sees and revokes every key of its org
        alice_list = await client.get("/v1/keys", headers=alice)
        assert {k["key_id"] for k in alice_list.json()["keys"]} == {alice_key_id, bob_key_id}
        assert (await client.delete(f"/v1/keys/{bob_key_id}", headers=alice)).status_code == 200
        # no assertion, or one signed by someone else, is 401
        assert (await client.get("/v1/keys")).status_code == 401
        forged = AssertionSigner(generate_keypair()[0]).sign(
            Principal(organization=acme, subject=f"{acme}/alice", scopes=frozenset({"keys:manage"}))
        )
        assert (await client.get("/v1/keys", headers={ASSERTION: forged})).status_code == 401
        # a genuine assertion addressed to another upstream (the memory service) is 401 too
        for_memory = signer.sign(
            Principal(
                organization=acme, subject=f"{acme}/alice", scopes=frozenset({"keys:manage"})
            ),
            audience=MEMORY_AUDIENCE,
        )
        assert (await client.get("/v1/keys", headers={ASSERTION: for_memory})).status_code == 401
        # one bound to GET /v1/keys is good there only: not on another route or method
        alice_principal = Principal(
            organization=acme, subject=f"{acme}/alice", scopes=frozenset({"keys:manage"})
        )
        listing = signer.sign(
            alice_principal, audience=SIDECAR_AUDIENCE, method="GET", path="/v1/keys"
        )
        assert (await client.get("/v1/keys", headers={ASSERTION: listing})).status_code == 200
        assert (await client.get("/v1/usage", headers={ASSERTION: listing})).status_code == 401
        replay = await client.delete(f"/v1/keys/{alice_key_id}", headers={ASSERTION: listing})
        assert replay.status_code == 401
        usage = await client.get("/v1/usage", headers=bob)
        assert usage.status_code == 200


async def test_resolve_users_and_service_applications(
    casdoor: CasdoorServer, tmp_path: Path
) -> None:
    path, names = await _tenant(casdoor, tmp_path)
    acme = names["acme"]
    settings = _settings(casdoor, tmp_path, path)
    async with admin_client(casdoor) as cd:
        # the tenant's service application holds no Casdoor application (nor its secret)
        assert await cd.get_object("application", "admin", f"{acme}-indexer") is None
    async with running_app(settings, app=build_app(settings)) as (_, state, client):
        auth = bearer(settings)
        user = await client.post(
            RESOLVE_PATH, json={"kind": "user", "organization": acme, "name": "alice"}, headers=auth
        )
        assert user.status_code == 200, user.text
        principal = Principal.model_validate(user.json()["principal"])
        assert principal.scopes == {
            "memory:read",
            "memory:write",
            "memory:delete",
            "inference:invoke",
            "keys:manage",
        }
        assert principal.roles == ("admin",) and principal.limits.requests_per_minute == 600
        # it calls with a key it owns, within the tenant file's scopes for it
        key, _record = await state.issuer.issue(
            NewKey(
                organization=acme,
                owner=f"{acme}/{acme}-indexer",
                owner_kind=PrincipalKind.APPLICATION,
                name="indexer",
                scopes=["memory:write"],
            )
        )
        app = await client.post(VERIFY_PATH, json={"key": key}, headers=auth)
        assert app.status_code == 200, app.text
        app_principal = Principal.model_validate(app.json()["principal"])
        assert app_principal.kind is PrincipalKind.APPLICATION
        assert app_principal.subject == f"{acme}/{acme}-indexer"
        assert app_principal.scopes == {"memory:write"}
        # a Casdoor application (the sidecar's own) is no tenant principal
        casdoor_app = await client.post(
            RESOLVE_PATH, json={"kind": "application", "client_id": casdoor.client_id}, headers=auth
        )
        assert casdoor_app.status_code == 401, casdoor_app.text
        for body in (
            {"kind": "user", "organization": acme, "name": "nobody"},
            {"kind": "application", "client_id": "no-such-client"},
        ):
            unknown = await client.post(RESOLVE_PATH, json=body, headers=auth)
            assert unknown.status_code == 401, body
            assert unknown.json()["error"]["code"] == "unknown_principal"
        missing = await client.post(RESOLVE_PATH, json={"kind": "user"}, headers=auth)
        assert missing.status_code == 400
        assert (await client.post(RESOLVE_PATH, json={"kind": "user"})).status_code == 401


async def test_casdoor_refusing_our_credentials_is_502_not_500(
    casdoor: CasdoorServer, tmp_path: Path
) -> None:
    from pydantic import SecretStr

    settings = casdoor_settings(tmp_path / "state", casdoor)
    settings = settings.model_copy(update={"casdoor_client_secret": SecretStr("wrong-secret")})
    async with running_app(settings, run_reconcile=False) as (_, _state, client):
        response = await client.post(
            RESOLVE_PATH,
            json={"kind": "user", "organization": "whatever", "name": "alice"},
            headers=bearer(settings),
        )
        assert response.status_code == 502, response.text
        assert response.json()["error"]["code"] == "casdoor_error"
        assert "wrong-secret" not in response.text
