"""Tenant sync against the real Casdoor: plan, apply, idempotence, hand edits, prune."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path

import httpx
import pytest

from hanzo_contract.signin import org_cli_application
from hanzo_stack.casdoor.server import CasdoorServer
from iam_sidecar.casdoor.client import CasdoorClient
from iam_sidecar.db.database import open_database
from iam_sidecar.errors import ApplyConflict, ApplyFailed, UpstreamUnavailable
from iam_sidecar.tenants.apply import apply_plan, make_plan
from iam_sidecar.tenants.loader import load_tenant_file, parse_tenant_text
from tests.support.casdoor_admin import admin_client

from .helpers import (
    SEED_PASSWORDS,
    casdoor_on_each_engine,  # noqa: F401 (fixture "casdoor": each engine)
    unique_example,
)


async def test_plan_apply_round_trip_is_idempotent(casdoor: CasdoorServer, tmp_path: Path) -> None:
    path, names = unique_example(tmp_path)
    spec = load_tenant_file(path)
    acme = names["acme"]
    db = await open_database(tmp_path / "audit.db")
    try:
        async with admin_client(casdoor) as client:
            first = await make_plan(client, spec)
            assert {c.action for c in first.changes} == {"create"}
            # a login and a CLI app per tenant; no Casdoor application for the indexer
            assert len(first.writes) == 20
            assert f"+ create role {acme}/writer" in first.render()

            result = await apply_plan(client, spec, db=db, env=SEED_PASSWORDS)
            assert len(result.applied) == 20
            assert (await make_plan(client, spec)).is_noop
            again = await apply_plan(client, spec, db=db, env=SEED_PASSWORDS)
            assert again.applied == []

            # what landed is what the file says
            perm = await client.get_object("permission", acme, "memory-write")
            assert perm is not None
            assert perm["resources"] == ["memory"] and perm["actions"] == ["write"]
            assert sorted(perm["roles"]) == [f"{acme}/admin", f"{acme}/writer"]
            user = await client.get_user(acme, "alice")
            assert user is not None and [r["name"] for r in user["roles"]] == ["admin"]
            login = await client.get_object("application", "admin", f"{acme}-login")
            assert login is not None
            token = await client.password_token(
                acme,
                "alice",
                SEED_PASSWORDS["ACME_ALICE_PASSWORD"],
                client_id=login["clientId"],
                client_secret=login["clientSecret"],
            )
            assert token["access_token"]
        rows = await db.fetch_all("SELECT action, COUNT(*) AS n FROM audit_log GROUP BY action")
        counts = {row["action"]: row["n"] for row in rows}
        assert counts == {"sync.create": 20}
    finally:
        await db.close()


async def test_hand_edit_in_casdoor_shows_in_next_plan(
    casdoor: CasdoorServer, tmp_path: Path
) -> None:
    path, names = unique_example(tmp_path)
    spec = load_tenant_file(path)
    acme = names["acme"]
    async with admin_client(casdoor) as client:
        await apply_plan(client, spec, env=SEED_PASSWORDS)
        role = await client.get_role(acme, "reader")
        assert role is not None
        role["displayName"] = "Renamed in the admin UI"
        await client.update_object("role", acme, "reader", role)
        perm = await client.get_object("permission", acme, "memory-read")
        assert perm is not None
        perm["actions"] = ["write"]
        await client.update_object("permission", acme, "memory-read", perm)

        plan = await make_plan(client, spec)
        updates = {(c.kind, c.ident): c for c in plan.changes}
        assert set(updates) == {("role", f"{acme}/reader"), ("permission", f"{acme}/memory-read")}
        role_diff = updates[("role", f"{acme}/reader")].diffs
        assert [(d.field, d.current, d.desired) for d in role_diff] == [
            ("displayName", "Renamed in the admin UI", "Readers")
        ]
        assert "displayName: 'Renamed in the admin UI' -> 'Readers'" in plan.render()

        await apply_plan(client, spec, env=SEED_PASSWORDS)
        assert (await make_plan(client, spec)).is_noop
        # members added by hand (not seed users) are Casdoor's business: kept, no drift
        role = await client.get_role(acme, "reader")
        assert role is not None
        role["users"] = [*role["users"], f"{acme}/someone-else"]
        await client.update_object("role", acme, "reader", role)
        assert (await make_plan(client, spec)).is_noop


async def test_device_login_is_turned_on_and_off_by_the_tenant_file(
    casdoor: CasdoorServer, tmp_path: Path
) -> None:
    """``device_login`` is the device grant (and the client id) of the tenant's CLI app in
    Casdoor: off on create, one update each way, idempotent; while off Casdoor gives no
    device code for the app's name."""
    path, names = unique_example(tmp_path)
    acme = names["acme"]
    cli = org_cli_application(acme)
    off = load_tenant_file(path)
    on_path = tmp_path / "on.yaml"
    on_path.write_text(
        re.sub(rf"(- name: {acme}\n)", r"\1    device_login: true\n", path.read_text())
    )
    on = load_tenant_file(on_path)
    assert [o.device_login for o in on.organizations] == [True, False]

    async def device_code_for(client_id: str) -> dict[str, object]:
        async with httpx.AsyncClient() as http:
            response = await http.post(
                f"{casdoor.url}/api/device-auth", data={"client_id": client_id}
            )
            return response.json()

    async with admin_client(casdoor) as client:
        await apply_plan(client, off, env=SEED_PASSWORDS)
        app = await client.get_object("application", "admin", cli)
        assert app is not None and app["grantTypes"] == ["refresh_token"]
        assert "device_code" not in await device_code_for(cli)

        plan = await make_plan(client, on)
        assert [(c.action, c.kind, c.ident) for c in plan.changes] == [
            ("update", "application", f"admin/{cli}")
        ]
        assert {d.field for d in plan.changes[0].diffs} == {"clientId", "grantTypes"}
        await apply_plan(client, on, env=SEED_PASSWORDS)
        assert (await make_plan(client, on)).is_noop
        app = await client.get_object("application", "admin", cli)
        assert app is not None and app["clientId"] == cli
        assert "urn:ietf:params:oauth:grant-type:device_code" in app["grantTypes"]
        assert "device_code" in await device_code_for(cli)

        await apply_plan(client, off, env=SEED_PASSWORDS)
        assert (await make_plan(client, off)).is_noop
        assert "device_code" not in await device_code_for(cli)


async def test_prune_removes_only_managed_objects(casdoor: CasdoorServer, tmp_path: Path) -> None:
    path, names = unique_example(tmp_path)
    acme, globex = names["acme"], names["globex"]
    spec = load_tenant_file(path)
    stranger = f"stranger-{uuid.uuid4().hex[:8]}"
    async with admin_client(casdoor) as client:
        await apply_plan(client, spec, env=SEED_PASSWORDS)
        # objects hanzo does not manage: an organization, and a role inside a managed one
        await client.add_object(
            "organization", {"owner": "admin", "name": stranger, "passwordType": "bcrypt"}
        )
        await client.add_object(
            "role",
            {"owner": globex, "name": "handmade", "isEnabled": True, "users": [], "roles": []},
        )
        # drop the writer role from acme and the whole globex organization from the file
        text = path.read_text()
        text = text.replace(
            "      - name: writer\n        display_name: Writers\n"
            "        scopes: [memory:read, memory:write, inference:invoke]\n",
            "",
        )
        text = text[: text.index(f"  - name: {globex}")]
        smaller = parse_tenant_text(text)

        without = await make_plan(client, smaller)
        assert [c for c in without.changes if c.action == "delete"] == []
        plan = await make_plan(client, smaller, prune=True)
        deleted = {(c.kind, c.ident) for c in plan.changes if c.action == "delete"}
        assert ("role", f"{acme}/writer") in deleted
        assert ("role", f"{globex}/member") in deleted
        assert ("user", f"{globex}/carol") in deleted
        assert ("application", f"admin/{globex}-login") in deleted
        assert ("role", f"{globex}/handmade") not in deleted
        assert not any(stranger in ident for _, ident in deleted)
        kept = [c for c in plan.changes if c.action == "keep"]
        assert [(c.kind, c.ident) for c in kept] == [("organization", f"admin/{globex}")]
        assert "role handmade" in (kept[0].note or "")

        await apply_plan(client, smaller, prune=True, env=SEED_PASSWORDS)
        assert await client.get_role(acme, "writer") is None
        assert await client.get_role(globex, "member") is None
        assert await client.get_role(globex, "handmade") is not None
        assert await client.get_organization(stranger) is not None
        assert await client.get_organization(globex) is not None  # held by "handmade"
        # memory-write is still granted by acme's admin role; its role list shrank
        perm = await client.get_object("permission", acme, "memory-write")
        assert perm is not None and perm["roles"] == [f"{acme}/admin"]
        assert (await make_plan(client, smaller, prune=True)).writes == []


async def test_conflict_with_unmanaged_object_applies_nothing(
    casdoor: CasdoorServer, tmp_path: Path
) -> None:
    path, names = unique_example(tmp_path)
    acme = names["acme"]
    async with admin_client(casdoor) as client:
        await client.add_object(
            "organization", {"owner": "admin", "name": acme, "passwordType": "bcrypt"}
        )
        spec = load_tenant_file(path)
        with pytest.raises(ApplyConflict) as info:
            await apply_plan(client, spec, env=SEED_PASSWORDS)
        assert f"organization admin/{acme}" in info.value.details["conflicts"]
        assert await client.get_organization(names["globex"]) is None
        assert await client.get_object("application", "admin", f"{acme}-login") is None


async def test_missing_seed_password_applies_nothing(
    casdoor: CasdoorServer, tmp_path: Path
) -> None:
    path, names = unique_example(tmp_path)
    spec = load_tenant_file(path)
    async with admin_client(casdoor) as client:
        with pytest.raises(Exception, match="password env vars are not set") as info:
            await apply_plan(client, spec, env={})
        assert info.value.details == {"missing_env": sorted(SEED_PASSWORDS)}  # type: ignore[attr-defined]
        assert await client.get_organization(names["acme"]) is None


async def test_casdoor_down_is_a_clear_error(tmp_path: Path) -> None:
    path, _ = unique_example(tmp_path)
    spec = load_tenant_file(path)
    from hanzo_stack.process import free_port

    async with CasdoorClient(
        f"http://127.0.0.1:{free_port()}", "id", "secret", timeout=1, retries=1
    ) as client:
        with pytest.raises(UpstreamUnavailable, match="nothing was read or changed"):
            await make_plan(client, spec)


class _FailAfter(httpx.AsyncBaseTransport):
    """Fault injection around the real transport: refuse the connection after N writes."""

    def __init__(self, writes_allowed: int) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._left = writes_allowed

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if re.search(r"/api/(add|update|delete)-", request.url.path):
            if self._left <= 0:
                raise httpx.ConnectError("injected: Casdoor went away", request=request)
            self._left -= 1
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def test_casdoor_failing_midway_says_how_far_it_got(
    casdoor: CasdoorServer, tmp_path: Path
) -> None:
    path, names = unique_example(tmp_path)
    spec = load_tenant_file(path)
    flaky = CasdoorClient(
        casdoor.url,
        casdoor.client_id,
        casdoor.client_secret,
        retries=1,
        transport=_FailAfter(writes_allowed=7),
    )
    async with flaky:
        with pytest.raises(ApplyFailed) as info:
            await apply_plan(flaky, spec, env=SEED_PASSWORDS)
    details = info.value.details
    assert len(details["applied"]) == 7  # 2 organizations, 4 applications, acme's alice
    assert details["failed"] == "create user " + f"{names['acme']}/bob"
    assert len(details["not_applied"]) == 20 - 8
    assert "after 7 of 20 changes" in info.value.message
    async with admin_client(casdoor) as client:
        rest = await make_plan(client, spec)
        assert len(rest.writes) == 13  # exactly what was not applied
        await apply_plan(client, spec, env=SEED_PASSWORDS)
        assert (await make_plan(client, spec)).is_noop


async def test_two_applies_at_once_both_end_converged(
    casdoor: CasdoorServer, tmp_path: Path
) -> None:
    """The reconcile loop of each sidecar replica and ``hanzo up``'s apply may write the same
    change at once: the one that comes second finds it made ("already exists") and must
    end converged, not fail the stack's start."""
    path, _ = unique_example(tmp_path)
    spec = load_tenant_file(path)
    async with admin_client(casdoor) as first, admin_client(casdoor) as second:
        results = await asyncio.gather(
            apply_plan(first, spec, env=SEED_PASSWORDS),
            apply_plan(second, spec, env=SEED_PASSWORDS),
            return_exceptions=True,
        )
        assert not [r for r in results if isinstance(r, BaseException)], results
        assert (await make_plan(first, spec)).is_noop
