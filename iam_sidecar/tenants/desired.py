"""What Casdoor should hold for a tenant file: the managed fields of every object.

Only the fields listed here are compared and written; everything else on an object (and
every object without our marker) is Casdoor's or the operator's business.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from hanzo_contract.signin import DEVICE_CODE_GRANT, org_cli_application, org_cli_client_id
from iam_sidecar.casdoor.scopes import MANAGED_MARKER, managed_description, permission_name
from iam_sidecar.tenants.casdoor_defaults import default_account_items, signup_items
from iam_sidecar.tenants.model import TenantFile, login_application, signup_group
from iam_sidecar.tenants.policy import TenantPolicy

Kind = Literal["organization", "group", "application", "user", "role", "permission"]
#: creation order; deletion runs in reverse
KIND_ORDER: tuple[Kind, ...] = (
    "organization",
    "group",
    "application",
    "user",
    "role",
    "permission",
)
MANAGED_TAG = "hanzo-managed"
MANAGED_PROPERTY = "hanzo-managed"


class Desired(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: Kind
    owner: str
    name: str
    #: compared with Casdoor's object and written on create/update
    fields: dict[str, Any]
    #: ``role.users`` is only managed for the file's seed users of that organization
    seed_users: tuple[str, ...] = ()
    #: env var holding a seed user's initial password (create only, never compared)
    password_env: str | None = None
    #: set when creating only; operators may change these later without drift
    create_only: dict[str, Any] = {}

    @property
    def ident(self) -> str:
        return f"{self.owner}/{self.name}"


def is_managed_object(kind: str, obj: dict[str, Any]) -> bool:
    if kind == "organization":
        return MANAGED_TAG in (obj.get("tags") or [])
    if kind == "user":
        return (obj.get("properties") or {}).get(MANAGED_PROPERTY) == "true"
    if kind == "group":  # a Casdoor group has no description
        return str(obj.get("displayName") or "").startswith(MANAGED_MARKER)
    return str(obj.get("description") or "").startswith(MANAGED_MARKER)


def desired_objects(spec: TenantFile, assets_url: str | None = None) -> list[Desired]:
    """``assets_url``: where the stack serves Casdoor's images (casdoor/static/README.md)."""
    out: list[Desired] = []
    cert = spec.casdoor.cert
    images = _images(assets_url)
    for org in spec.organizations:
        tags = sorted({MANAGED_TAG, f"plan:{org.plan}"} if org.plan else {MANAGED_TAG})
        out.append(
            Desired(
                kind="organization",
                owner="admin",
                name=org.name,
                fields={
                    "displayName": org.display_name or org.name,
                    "passwordType": "bcrypt",
                    "tags": tags,
                    # Casdoor's sign-in and device pages break on an org without languages
                    # (the language menu reads its length), and the admin UI would cover
                    # the lists with its guided tour
                    "languages": ["en"],
                    "enableTour": False,
                    **images.organization,
                },
                create_only={"accountItems": default_account_items()},
            )
        )
        # Signed-up users join the tenant's sign-up group, and the sign-up role names
        # that group: the one role they hold (Casdoor's own default-group mechanism)
        group = f"{org.name}/{signup_group(org.name)}" if org.signup_role else ""
        if org.signup_role:
            out.append(
                Desired(
                    kind="group",
                    owner=org.name,
                    name=signup_group(org.name),
                    fields={
                        "displayName": managed_description("signed-up users"),
                        "type": "Virtual",
                        "parentId": org.name,
                        "isTopGroup": True,
                        "isEnabled": True,
                    },
                )
            )
        # Only the login application: a tenant's service applications are principals of
        # ours, never Casdoor applications (any Casdoor application's client id/secret, and
        # any client-credentials token, is a Casdoor-wide admin credential). They call with
        # hk- keys owned by the application (``hanzo keys create --app``).
        out.append(
            _application(
                login_application(org.name),
                org.name,
                f"{org.display_name or org.name} login",
                "login application",
                cert,
                {
                    "grantTypes": ["authorization_code", "password", "refresh_token"],
                    "enableSignUp": org.signup,
                    "signupItems": signup_items() if org.signup else [],
                    "defaultGroup": group,
                    **images.app,
                },
            )
        )
        # the CLI's device sign-in: its device page signs users in to this organization
        # (the shared hanzo-cli application's page would use built-in: hanzo_contract.signin).
        # Off unless the file turns it on: then no device grant, and a client id nobody
        # asks for, so Casdoor refuses the device request itself (it checks no grant there)
        cli = org_cli_application(org.name)
        grants = [DEVICE_CODE_GRANT, "refresh_token"] if org.device_login else ["refresh_token"]
        out.append(
            _application(
                cli,
                org.name,
                f"{org.display_name or org.name} CLI sign-in",
                "CLI device sign-in",
                cert,
                {
                    # public: a device-code client has no secret to keep
                    "clientId": org_cli_client_id(org.name, org.device_login),
                    "grantTypes": grants,
                    "enablePassword": True,
                    "enableSignUp": False,
                    # Casdoor's default is 0: a token that expires as it is issued
                    "expireInHours": 1,
                    "refreshExpireInHours": 168,
                    "signupItems": [],  # the page reads it (null breaks it) even with no signup
                    "signinMethods": [
                        {"name": "Password", "displayName": "Password", "rule": "All"}
                    ],
                    **images.app,
                },
            )
        )
        seed = tuple(sorted(f"{org.name}/{u.name}" for u in org.users))
        for user in org.users:
            out.append(
                Desired(
                    kind="user",
                    owner=org.name,
                    name=user.name,
                    fields={
                        "displayName": user.display_name or user.name,
                        "email": user.email or "",
                        "isAdmin": user.is_admin,
                        "type": "normal-user",
                        "properties": {MANAGED_PROPERTY: "true"},
                    },
                    password_env=user.password_env,
                    create_only=images.user,  # a user's own picture is theirs to change
                )
            )
        for role in org.roles:
            members = sorted(f"{org.name}/{u.name}" for u in org.users if role.name in u.roles)
            out.append(
                Desired(
                    kind="role",
                    owner=org.name,
                    name=role.name,
                    fields={
                        "displayName": role.display_name or role.name,
                        "description": managed_description(
                            "scopes: " + ", ".join(sorted(set(role.scopes)))
                        ),
                        "isEnabled": True,
                        "users": members,
                        "groups": [group] if group and role.name == org.signup_role else [],
                    },
                    seed_users=seed,
                )
            )
        grants: dict[str, list[str]] = {}
        for role in org.roles:
            for scope in role.scopes:
                grants.setdefault(scope, []).append(f"{org.name}/{role.name}")
        for scope, role_ids in sorted(grants.items()):
            area, action = scope.split(":", 1)
            out.append(
                Desired(
                    kind="permission",
                    owner=org.name,
                    name=permission_name(scope),
                    fields={
                        "displayName": scope,
                        "description": managed_description(f"grants {scope}"),
                        "resourceType": "Custom",
                        "resources": [area],
                        "actions": [action],
                        "effect": "Allow",
                        "isEnabled": True,
                        "roles": sorted(set(role_ids)),
                        "users": [],
                        "state": "Approved",
                    },
                )
            )
    return out


class _Images(BaseModel):
    organization: dict[str, str] = {}
    app: dict[str, str] = {}
    user: dict[str, str] = {}


def _images(assets_url: str | None) -> _Images:
    """Our images for the fields Casdoor's pages show; none without a URL (Casdoor's own
    defaults then, from its CDN)."""
    if not assets_url:
        return _Images()
    base = assets_url.rstrip("/")
    logo, avatar = f"{base}/img/hanzo.svg", f"{base}/img/avatar.svg"
    return _Images(
        organization={"logo": logo, "favicon": f"{base}/img/favicon.svg", "defaultAvatar": avatar},
        app={"logo": logo},
        user={"avatar": avatar},
    )


def _application(
    name: str, organization: str, display: str, about: str, cert: str, extra: dict[str, Any]
) -> Desired:
    return Desired(
        kind="application",
        owner="admin",
        name=name,
        fields={
            "organization": organization,
            "displayName": display,
            "description": managed_description(about),
            "cert": cert,
            "tokenFormat": "JWT-Empty",
            **extra,
        },
    )


def policy_of(spec: TenantFile) -> TenantPolicy:
    """Plan limits per organization and service-app scopes, as the sidecar serves them."""
    plan_limits = {
        org.name: spec.plans[org.plan].limits()
        for org in spec.organizations
        if org.plan is not None and org.plan in spec.plans
    }
    app_scopes = {
        (org.name, app.name): frozenset(app.scopes)
        for org in spec.organizations
        for app in org.applications
    }
    return TenantPolicy(plan_limits=plan_limits, application_scopes=app_scopes)
