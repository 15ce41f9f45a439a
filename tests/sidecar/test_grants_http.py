"""Grants that must not be possible, reproduced as issue 10 did: through ``/v1/keys`` with
the real Casdoor in the loop.

A caller here is what the gateway would send: the principal of a verified credential
(``/v1/keys/verify`` for a key) signed into the identity assertion.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest

from hanzo_contract.assertion import SIDECAR_AUDIENCE, AssertionSigner
from hanzo_contract.headers import ASSERTION
from hanzo_contract.principal import Limits, Principal
from hanzo_contract.verify import RESOLVE_PATH, VERIFY_PATH
from hanzo_stack.casdoor.server import CasdoorServer
from iam_sidecar.casdoor.scopes import managed_description
from iam_sidecar.errors import LimitEscalation
from iam_sidecar.http.app import build_app
from iam_sidecar.keys.models import NewKey
from iam_sidecar.settings import SidecarSettings
from iam_sidecar.state import SidecarState
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

PRO = Limits(requests_per_minute=600, units_per_day=100000, units_per_month=2000000)
ADMIN_SCOPES = {"memory:read", "memory:write", "memory:delete", "inference:invoke", "keys:manage"}


async def _tenant(casdoor: CasdoorServer, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    path, names = unique_example(tmp_path)
    async with admin_client(casdoor) as client:
        await apply_plan(client, load_tenant_file(path), env=SEED_PASSWORDS)
    return path, names


def _settings(casdoor: CasdoorServer, tmp_path: Path, path: Path, **kw: object) -> SidecarSettings:
    return casdoor_settings(tmp_path / "state", casdoor, tenant_file=path, **kw)


def _bound(signer: AssertionSigner, principal: Principal) -> str:
    """A placeholder the client's hook signs for the sidecar and the very request."""
    return placeholder(
        lambda method, path: signer.sign(
            principal, audience=SIDECAR_AUDIENCE, method=method, path=path
        )
    )


def _user(signer: AssertionSigner, org: str, user: str, scopes: set[str]) -> dict[str, str]:
    """A signed-in user (Casdoor JWT) as the gateway asserts it: the plan's limits."""
    principal = Principal(
        organization=org,
        subject=f"{org}/{user}",
        scopes=frozenset(scopes),
        limits=PRO,
        org_limits=PRO,
    )
    return {ASSERTION: _bound(signer, principal)}


async def _as_key(
    client: httpx.AsyncClient, settings: SidecarSettings, signer: AssertionSigner, key: str
) -> dict[str, str]:
    """A key as the gateway asserts it: the principal ``/v1/keys/verify`` answers."""
    answer = await client.post(VERIFY_PATH, json={"key": key}, headers=bearer(settings))
    assert answer.status_code == 200, answer.text
    principal = Principal.model_validate(answer.json()["principal"])
    return {ASSERTION: _bound(signer, principal)}


async def _create(
    client: httpx.AsyncClient, headers: dict[str, str], **body: object
) -> httpx.Response:
    body.setdefault("name", f"k-{uuid.uuid4().hex[:8]}")
    body.setdefault("scopes", ["memory:read"])
    return await client.post("/v1/keys", json=body, headers=headers)


def _refused(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    return error


async def _denials(state: SidecarState, organization: str, action: str) -> list[str]:
    events = await state.keys.audit.query(organization=organization, action=action)
    return [e.outcome for e in events if e.outcome.startswith("denied:")]


async def test_a_reader_cannot_set_its_own_limits(casdoor: CasdoorServer, tmp_path: Path) -> None:
    """Grant 1: ``{"limits": {"requests_per_minute": 1000000000}}`` as a reader on a 600
    rpm plan is refused (and audited); tightening is allowed, and charged as such."""
    path, names = await _tenant(casdoor, tmp_path)
    acme = names["acme"]
    settings = _settings(casdoor, tmp_path, path)
    bob = _user(signer_for(settings), acme, "bob", {"memory:read"})
    async with running_app(settings) as (_, state, client):
        greedy = await _create(client, bob, limits={"requests_per_minute": 1_000_000_000})
        error = _refused(greedy, 403, "limit_escalation")
        assert error["details"]["looser_fields"] == ["requests_per_minute"]
        tight = await _create(client, bob, limits={"requests_per_minute": 10})
        assert tight.status_code == 201, tight.text
        answer = await client.post(
            VERIFY_PATH, json={"key": tight.json()["key"]}, headers=bearer(settings)
        )
        principal = Principal.model_validate(answer.json()["principal"])
        assert principal.limits == PRO.model_copy(update={"requests_per_minute": 10})
        assert principal.org_limits == PRO  # the organization's bucket: always the plan

        # the operator's path (the CLI: no caller) is held to the plan too
        with pytest.raises(LimitEscalation):
            await state.issuer.issue(
                NewKey(
                    organization=acme,
                    owner=f"{acme}/bob",
                    name="cli",
                    scopes=["memory:read"],
                    limits=Limits(units_per_day=100001),
                ),
                actor="cli",
            )
        denials = await _denials(state, acme, "key.create")
        assert denials == ["denied:limit_escalation", "denied:limit_escalation"]


async def test_keys_per_owner_are_capped_over_http(casdoor: CasdoorServer, tmp_path: Path) -> None:
    path, names = await _tenant(casdoor, tmp_path)
    acme = names["acme"]
    settings = _settings(casdoor, tmp_path, path, max_keys_per_owner=2)
    bob = _user(signer_for(settings), acme, "bob", {"memory:read"})
    async with running_app(settings) as (_, state, client):
        assert (await _create(client, bob)).status_code == 201
        assert (await _create(client, bob)).status_code == 201
        error = _refused(await _create(client, bob), 409, "too_many_keys")
        assert error["details"] == {"live_keys": 2, "max_keys_per_owner": 2}
        assert await _denials(state, acme, "key.create") == ["denied:too_many_keys"]


async def test_unknown_scopes_are_refused_in_post_keys(
    casdoor: CasdoorServer, tmp_path: Path
) -> None:
    """Grant 5: ``memory:teleport`` is no scope, whoever asks."""
    path, names = await _tenant(casdoor, tmp_path)
    acme = names["acme"]
    settings = _settings(casdoor, tmp_path, path)
    alice = _user(signer_for(settings), acme, "alice", ADMIN_SCOPES)
    async with running_app(settings) as (_, state, client):
        response = await _create(client, alice, scopes=["memory:read", "memory:teleport"])
        error = _refused(response, 400, "unknown_scope")
        assert error["details"] == {"unknown_scopes": ["memory:teleport"]}
        assert await _denials(state, acme, "key.create") == ["denied:unknown_scope"]


async def test_keys_cannot_outlive_or_outrank_their_parent(
    casdoor: CasdoorServer, tmp_path: Path
) -> None:
    """Grant 2, as reproduced: a key that expires in 1 h minted a child with no expiry; the
    child and a grandchild kept working after the parent was revoked; a plain key minted
    and rotated keys."""
    path, names = await _tenant(casdoor, tmp_path)
    acme = names["acme"]
    settings = _settings(casdoor, tmp_path, path)
    signer = signer_for(settings)
    alice = _user(signer, acme, "alice", ADMIN_SCOPES)
    clock = ManualClock()
    app = build_app(settings, clock=clock)
    async with running_app(settings, app=app) as (_, state, client):
        # a manager key that expires in one hour
        made = await _create(client, alice, scopes=sorted(ADMIN_SCOPES), expires_in_seconds=3600)
        assert made.status_code == 201, made.text
        parent_key, parent = made.json()["key"], made.json()["record"]
        as_parent = await _as_key(client, settings, signer, parent_key)

        # its child asks for no expiry: it gets the parent's; asking for longer is refused
        child = await _create(client, as_parent, scopes=["memory:read", "keys:manage"])
        assert child.status_code == 201, child.text
        assert child.json()["record"]["expires_at"] == parent["expires_at"]
        assert child.json()["record"]["parent_key_id"] == parent["key_id"]
        longer = await _create(client, as_parent, expires_in_seconds=7200)
        _refused(longer, 403, "expiry_escalation")

        # the child (narrowed to memory:read + keys:manage) cannot mint wider, even for
        # alice, whose roles grant memory:write
        as_child = await _as_key(client, settings, signer, child.json()["key"])
        wider = await _create(client, as_child, scopes=["memory:read", "memory:write"])
        assert _refused(wider, 403, "scope_escalation")["details"]["excess_scopes"] == [
            "memory:write"
        ]
        grandchild = await _create(client, as_child, scopes=["memory:read"])
        assert grandchild.status_code == 201, grandchild.text
        assert grandchild.json()["record"]["parent_key_id"] == child.json()["record"]["key_id"]

        # a plain key (no keys:manage) mints nothing and rotates nothing, not even itself
        as_plain = await _as_key(client, settings, signer, grandchild.json()["key"])
        _refused(await _create(client, as_plain), 403, "keys_manage_required")
        own_id = grandchild.json()["record"]["key_id"]
        rotate = await client.post(f"/v1/keys/{own_id}/rotate", json={}, headers=as_plain)
        _refused(rotate, 403, "keys_manage_required")

        # revoking the parent revokes child and grandchild at once
        revoked = await client.delete(f"/v1/keys/{parent['key_id']}", headers=alice)
        assert revoked.status_code == 200, revoked.text
        for made_key in (parent_key, child.json()["key"], grandchild.json()["key"]):
            gone = await client.post(VERIFY_PATH, json={"key": made_key}, headers=bearer(settings))
            _refused(gone, 401, "revoked_key")
        # and the revoked parent's still-cached assertion mints nothing more
        _refused(await _create(client, as_parent), 403, "parent_key_inactive")

        outcomes = await _denials(state, acme, "key.create")
        assert sorted(outcomes) == sorted(
            [
                "denied:expiry_escalation",
                "denied:scope_escalation",
                "denied:keys_manage_required",
                "denied:parent_key_inactive",
            ]
        )
        assert await _denials(state, acme, "key.rotate") == ["denied:keys_manage_required"]


async def test_a_rotated_key_keeps_its_expiry(casdoor: CasdoorServer, tmp_path: Path) -> None:
    """A leaked expiring key cannot be turned into a lasting one by rotating it."""
    path, names = await _tenant(casdoor, tmp_path)
    acme = names["acme"]
    settings = _settings(casdoor, tmp_path, path)
    signer = signer_for(settings)
    alice = _user(signer, acme, "alice", ADMIN_SCOPES)
    clock = ManualClock()
    app = build_app(settings, clock=clock)
    async with running_app(settings, app=app) as (_, _state, client):
        made = await _create(client, alice, scopes=["keys:manage"], expires_in_seconds=600)
        key, record = made.json()["key"], made.json()["record"]
        as_key = await _as_key(client, settings, signer, key)
        rotated = await client.post(
            f"/v1/keys/{record['key_id']}/rotate", json={"grace_seconds": 3600}, headers=as_key
        )
        assert rotated.status_code == 200, rotated.text
        assert rotated.json()["record"]["expires_at"] == record["expires_at"]
        clock.advance(600)
        for secret in (key, rotated.json()["key"]):  # grace never extends life
            gone = await client.post(VERIFY_PATH, json={"key": secret}, headers=bearer(settings))
            _refused(gone, 401, "expired_key")


async def test_a_managers_mint_for_a_member_is_bounded_by_the_manager(
    casdoor: CasdoorServer, tmp_path: Path
) -> None:
    """A manager's key narrowed to memory:read + keys:manage cannot give bob (a reader) a
    key with memory:write, nor limits looser than its own."""
    path, names = await _tenant(casdoor, tmp_path)
    acme = names["acme"]
    settings = _settings(casdoor, tmp_path, path)
    signer = signer_for(settings)
    alice = _user(signer, acme, "alice", ADMIN_SCOPES)
    async with running_app(settings) as (_, _state, client):
        made = await _create(
            client,
            alice,
            scopes=["memory:read", "keys:manage"],
            limits={"requests_per_minute": 5},
        )
        as_manager = await _as_key(client, settings, signer, made.json()["key"])
        for_bob = await _create(client, as_manager, owner=f"{acme}/bob", scopes=["memory:write"])
        _refused(for_bob, 403, "scope_escalation")
        looser = await _create(
            client, as_manager, owner=f"{acme}/bob", limits={"requests_per_minute": 6}
        )
        _refused(looser, 403, "limit_escalation")
        ok = await _create(client, as_manager, owner=f"{acme}/bob", scopes=["memory:read"])
        assert ok.status_code == 201, ok.text
        # unasked, bob's key keeps the manager key's tighter rate
        assert ok.json()["record"]["limits"]["requests_per_minute"] == 5


async def test_roles_and_permissions_of_another_organization_grant_nothing(
    casdoor: CasdoorServer, tmp_path: Path
) -> None:
    """Grant 3, against the real Casdoor, whose lookups have no owner filter:

    - an acme-owned managed permission naming globex's carol directly is listed in her
      ``get-user`` answer (it granted her ``keys:manage``);
    - globex's dave, who has no role of his own, named in acme's ``admin`` role, gets that
      role and its permissions listed (he showed up as ``admin`` in ``X-Roles``).
    Neither may grant anything.
    """
    path, names = await _tenant(casdoor, tmp_path)
    acme, globex = names["acme"], names["globex"]
    carol, dave = f"{globex}/carol", f"{globex}/dave"
    async with admin_client(casdoor) as admin:
        await admin.add_object(
            "user",
            {
                "owner": globex,
                "name": "dave",
                "displayName": "Dave",
                "type": "normal-user",
                # marked ours, so a later prune of this organization removes him too
                "properties": {"hanzo-managed": "true"},
            },
        )
        role = await admin.get_role(acme, "admin")
        assert role is not None
        await admin.update_object(
            "role", acme, "admin", {**role, "users": [*(role.get("users") or []), dave]}
        )
        await admin.add_object(
            "permission",
            {
                "owner": acme,
                "name": "smuggled-keys-manage",
                "displayName": "keys:manage",
                "description": managed_description("grants keys:manage"),
                "resourceType": "Custom",
                "resources": ["keys"],
                "actions": ["manage"],
                "effect": "Allow",
                "isEnabled": True,
                "roles": [],
                "users": [carol],
                "groups": [],
                "domains": [],
                "state": "Approved",
            },
        )
        raw_carol = await admin.get_user(globex, "carol")
        raw_dave = await admin.get_user(globex, "dave")
    assert raw_carol is not None and raw_dave is not None
    # what makes this a regression test: Casdoor itself hands the foreign objects over
    carol_perms = {(p.get("owner"), p.get("name")) for p in raw_carol.get("permissions") or []}
    assert (acme, "smuggled-keys-manage") in carol_perms, carol_perms
    dave_roles = {(r.get("owner"), r.get("name")) for r in raw_dave.get("roles") or []}
    assert (acme, "admin") in dave_roles, dave_roles

    settings = _settings(casdoor, tmp_path, path)
    signer = signer_for(settings)
    async with running_app(settings) as (_, state, client):

        async def resolve(name: str) -> Principal:
            resolved = await client.post(
                RESOLVE_PATH,
                json={"kind": "user", "organization": globex, "name": name},
                headers=bearer(settings),
            )
            assert resolved.status_code == 200, resolved.text
            return Principal.model_validate(resolved.json()["principal"])

        carol_now, dave_now = await resolve("carol"), await resolve("dave")
        assert carol_now.roles == ("member",)
        assert carol_now.scopes == {"memory:read", "memory:write"}
        assert dave_now.roles == () and dave_now.scopes == frozenset()
        # even an assertion claiming more: the issuer asks Casdoor, and filters by owner
        as_carol = _user(signer, globex, "carol", ADMIN_SCOPES)
        escalate = await _create(client, as_carol, scopes=["memory:delete", "keys:manage"])
        error = _refused(escalate, 403, "scope_escalation")
        assert error["details"]["excess_scopes"] == ["keys:manage", "memory:delete"]
        assert await _denials(state, globex, "key.create") == ["denied:scope_escalation"]
