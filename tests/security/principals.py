"""The principals of the security tests' stack (``authz_tenants.yaml``), read from the
tenant file the way the sidecar reads it, and how each gets a credential.

A test module that sets ``STACK_TENANT_FILE`` (import it from here) gets a
``running_stack`` with these tenants applied (tests/e2e/conftest.py).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from hanzo_contract.principal import Limits, PrincipalKind
from iam_sidecar.tenants.loader import load_tenant_file
from tests.e2e.support import RunningStack, pkce_login

STACK_TENANT_FILE = Path(__file__).with_name("authz_tenants.yaml")
TENANTS = load_tenant_file(STACK_TENANT_FILE)
#: the tenant whose principals call; the other one owns what they must never reach
HOME, OTHER = TENANTS.organizations[0], TENANTS.organizations[1]


@dataclass(frozen=True)
class Role:
    """A principal: a seed user holding one role, or a service application."""

    name: str
    subject: str
    kind: PrincipalKind
    scopes: frozenset[str]
    password_env: str | None = None

    @property
    def organization(self) -> str:
        return self.subject.split("/", 1)[0]


def _roles() -> dict[str, Role]:
    """One user per role of the home tenant (its scopes as the tenant file grants them)
    and its first service application."""
    granted = {role.name: frozenset(role.scopes) for role in HOME.roles}
    out: dict[str, Role] = {}
    for user in HOME.users:
        scopes = frozenset().union(*(granted[r] for r in user.roles))
        subject = f"{HOME.name}/{user.name}"
        for role in user.roles:
            out.setdefault(role, Role(role, subject, PrincipalKind.USER, scopes, user.password_env))
    app = HOME.applications[0]
    out["application"] = Role(
        "application", f"{HOME.name}/{app.name}", PrincipalKind.APPLICATION, frozenset(app.scopes)
    )
    return out


ROLES = _roles()
#: JWTs come from a Casdoor sign-in: users only (applications call with keys they own)
USER_ROLES = [name for name, role in ROLES.items() if role.password_env]
#: a user of the other tenant
OUTSIDER = Role(
    "outsider",
    f"{OTHER.name}/{OTHER.users[0].name}",
    PrincipalKind.USER,
    frozenset().union(*(frozenset(r.scopes) for r in OTHER.roles)),
    OTHER.users[0].password_env,
)


def plan_limits() -> Limits:
    """The home tenant's plan: no credential of it may be charged at anything looser."""
    return TENANTS.plans[HOME.plan].limits() if HOME.plan else Limits()


def sign_in(stack: RunningStack, role: Role) -> str:
    """An access token from Casdoor's sign-in (PKCE), as the CLI gets one."""
    assert role.password_env is not None
    user = role.subject.split("/", 1)[1]
    return pkce_login(stack, role.organization, user, stack.password(role.password_env))[
        "access_token"
    ]


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def mint(
    client: httpx.Client, by: str, owner: Role, scopes: list[str], **extra: Any
) -> tuple[str, dict[str, Any]]:
    """A key for ``owner`` minted through the gateway with the credential ``by``: the
    secret and its record."""
    reply = client.post(
        "/v1/keys",
        headers=bearer(by),
        json={
            "name": f"sec-{uuid.uuid4().hex[:10]}",
            "scopes": scopes,
            "owner": owner.subject,
            "owner_kind": owner.kind.value,
            **extra,
        },
    )
    assert reply.status_code == 201, reply.text
    return reply.json()["key"], reply.json()["record"]
