"""Per-tenant self sign-up against the real Casdoor: the tenant file's ``signup`` and
``signup_role`` planned and applied idempotently, and a new user taken or refused by the
sidecar's sign-up gate (``iam_sidecar/http/signup.py``) in front of Casdoor's own
sign-up API, which alone would put a user into any organization."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from hanzo_stack.casdoor.server import CasdoorServer
from iam_sidecar.casdoor.scopes import scopes_of_user_object
from iam_sidecar.errors import TenantFileError
from iam_sidecar.http.signup import SIGNUP_GUARD_PATH
from iam_sidecar.tenants.apply import apply_plan, make_plan
from iam_sidecar.tenants.loader import parse_tenant_text
from iam_sidecar.tenants.model import TenantFile, login_application, signup_group
from tests.support.casdoor_admin import admin_client
from tests.support.signup import signup_form, tenants_text

from .helpers import casdoor_settings, running_app


def _spec(open_org: str, closed_org: str, signup: bool = True) -> TenantFile:
    return parse_tenant_text(tenants_text(open_org, closed_org, signup))


async def test_signup_is_planned_applied_and_idempotent(
    casdoor: CasdoorServer, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:6]
    open_org, closed_org = f"open-{tag}", f"closed-{tag}"
    spec = _spec(open_org, closed_org)
    async with (
        admin_client(casdoor) as client,
        running_app(casdoor_settings(tmp_path, casdoor)) as (_, _, sidecar),
    ):

        async def sign_up(org: str, username: str, application: str | None = None) -> Any:
            """Through the gate, as the gateway sends it (a fresh session: no cookie)."""
            form = signup_form(org, username, application=application)
            reply = await sidecar.post(SIGNUP_GUARD_PATH, json=form)
            body = reply.json()
            if reply.status_code != 200:
                assert reply.status_code == 403, reply.text
                assert body["error"]["code"] == "signup_refused"
                return {"status": "error", "refused_by": "gate"}
            return body

        plan = await make_plan(client, spec)
        assert f"+ create group {open_org}/{signup_group(open_org)}" in plan.render()
        assert not any(c.kind == "group" and c.owner == closed_org for c in plan.changes)
        await apply_plan(client, spec)
        assert (await make_plan(client, spec)).is_noop  # what Casdoor returns compares equal
        app = await client.get_object("application", "admin", login_application(open_org))
        assert app is not None and app["enableSignUp"] is True
        assert app["defaultGroup"] == f"{open_org}/{signup_group(open_org)}"
        closed = await client.get_object("application", "admin", login_application(closed_org))
        assert closed is not None and closed["enableSignUp"] is False
        reader = await client.get_role(open_org, "reader")
        assert reader is not None and reader["groups"] == [f"{open_org}/{signup_group(open_org)}"]
        admin = await client.get_role(open_org, "admin")
        assert admin is not None and admin["groups"] == []

        # a new user signs up: in that tenant, with the sign-up role and nothing more
        name = f"newbie{tag}"
        assert (await sign_up(open_org, name))["status"] == "ok"
        user = await client.get_user(open_org, name)
        assert user is not None and user["owner"] == open_org and user["isAdmin"] is False
        roles, scopes = scopes_of_user_object(user)
        assert roles == ("reader",) and scopes == {"memory:read"}
        # the password is in no page, journal or WAL of Casdoor's SQLite database (the
        # user row keeps a bcrypt hash)
        password = signup_form(open_org, name)["password"].encode()
        db_path = casdoor.state.db_path
        stored = b"".join(
            path.read_bytes() for path in db_path.parent.glob(db_path.name + "*") if path.is_file()
        )
        assert password not in stored

        # the closed tenant: Casdoor's own sign-up API refuses it, and nothing is created
        refused = await sign_up(closed_org, f"intruder{tag}")
        assert refused["status"] == "error", refused
        assert await client.get_user(closed_org, f"intruder{tag}") is None
        # nor may the open tenant's application put a user into another organization:
        # the closed tenant, or built-in (whose users are Casdoor-wide admins)
        for org in (closed_org, "built-in"):
            crossing = await sign_up(org, f"crosser{tag}", application=login_application(open_org))
            assert crossing == {"status": "error", "refused_by": "gate"}
            assert await client.get_user(org, f"crosser{tag}") is None
        # why the gate: Casdoor alone takes that crossing (a user in the closed tenant)
        async with httpx.AsyncClient(base_url=casdoor.url, timeout=15) as bare:
            form = signup_form(closed_org, f"direct{tag}", application=login_application(open_org))
            direct = (await bare.post("/api/signup", json=form)).json()
        assert direct["status"] == "ok", direct
        await client.delete_object("user", {"owner": closed_org, "name": f"direct{tag}"})

        # sign-up off again: only the application's switch and form change; those who
        # signed up keep their role
        off = _spec(open_org, closed_org, signup=False)
        plan = await make_plan(client, off)
        assert [(c.kind, c.action) for c in plan.changes] == [("application", "update")]
        assert {d.field for d in plan.changes[0].diffs} == {"enableSignUp", "signupItems"}
        await apply_plan(client, off)
        assert (await make_plan(client, off)).is_noop
        assert (await sign_up(open_org, f"late{tag}"))["status"] == "error"
        kept = await client.get_user(open_org, name)
        assert kept is not None and scopes_of_user_object(kept)[1] == {"memory:read"}
        # the signed-up user is no managed object: gone, the tenants leave nothing that a
        # prune in another test (same session Casdoor) would have to keep
        await client.delete_object("user", kept)


@pytest.mark.parametrize(
    ("role", "message"),
    [("ghost", "unknown role 'ghost'"), ("admin", "may not grant keys:manage")],
)
def test_signup_role_must_be_a_plain_role_of_the_tenant(role: str, message: str) -> None:
    text = tenants_text("o", "c").replace("signup_role: reader", f"signup_role: {role}")
    with pytest.raises(TenantFileError) as info:
        parse_tenant_text(text)
    assert message in str(info.value.details) or message in info.value.message
    assert "signup_role" in str(info.value.details)
