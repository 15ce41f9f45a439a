"""The tenant file's schema: organizations, roles and their scopes, service apps, plans,
dev seed users. Pydantic checks shapes; :func:`semantic_problems` checks references and
duplicates, naming the field path of each problem.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from hanzo_contract.principal import Limits
from hanzo_contract.scopes import KEYS_MANAGE, KNOWN_SCOPES
from hanzo_contract.signin import DEVICE_LOGIN_OFF_REASON, org_cli_application

Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
Scope = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,39}:[a-z][a-z0-9_]{0,39}$")]
EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Z_][A-Z0-9_]{0,127}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PlanSpec(_Strict):
    requests_per_minute: int | None = Field(default=None, ge=1)
    units_per_day: int | None = Field(default=None, ge=1)
    units_per_month: int | None = Field(default=None, ge=1)
    #: model tokens per UTC day / month, metered by the inference gateway
    tokens_per_day: int | None = Field(default=None, ge=1)
    tokens_per_month: int | None = Field(default=None, ge=1)
    #: the inference models the plan may call (``/v1/models`` lists only these); omitted:
    #: every model the inference gateway serves
    models: list[Annotated[str, StringConstraints(min_length=1, max_length=200)]] | None = None

    def limits(self) -> Limits:
        return Limits(**self.model_dump())


class RoleSpec(_Strict):
    name: Name
    display_name: str | None = Field(default=None, max_length=100)
    scopes: list[Scope] = Field(default_factory=list)


class ApplicationSpec(_Strict):
    """A service application: a principal of kind application for service-to-service calls.

    It authenticates with ``hk-`` keys it owns, within ``scopes``; it is never a Casdoor
    application, so no tenant ever holds a Casdoor client secret (Casdoor treats any
    application's credentials as global admin).
    """

    name: Name
    display_name: str | None = Field(default=None, max_length=100)
    scopes: list[Scope] = Field(default_factory=list)


class UserSpec(_Strict):
    """A seed user for development; its password comes from an env var, never the file."""

    name: Name
    display_name: str | None = Field(default=None, max_length=100)
    email: str | None = Field(default=None, max_length=200, pattern=r"^[^@\s]+@[^@\s]+$")
    roles: list[Name] = Field(default_factory=list)
    is_admin: bool = False
    password_env: EnvName | None = None


class OrganizationSpec(_Strict):
    name: Name
    display_name: str | None = Field(default=None, max_length=100)
    plan: Name | None = None
    #: self sign-up on the tenant's login application (Casdoor's sign-up page, the email
    #: taken without a verification code); off by default: users come from this file,
    #: an admin, or an invitation
    signup: bool = False
    #: the one role a signed-up user holds (through the tenant's sign-up group); unset, a
    #: signed-up user holds no scope until an admin grants a role. Turning ``signup`` off
    #: later keeps it for those who signed up.
    signup_role: Name | None = None
    #: ``hanzo login --device`` for this tenant (hanzo_contract.signin): the device grant on
    #: its CLI application
    device_login: bool = Field(default=False, description=DEVICE_LOGIN_OFF_REASON)
    roles: list[RoleSpec] = Field(default_factory=list)
    applications: list[ApplicationSpec] = Field(default_factory=list)
    users: list[UserSpec] = Field(default_factory=list)

    @field_validator("device_login", mode="before")
    @classmethod
    def _device_login_is_a_yaml_bool(cls, value: object) -> object:
        """Only ``true``/``false``: a quoted ``"no"`` must not pass for a yes, and whoever
        writes the field learns why it is off by default."""
        if not isinstance(value, bool):
            raise ValueError(f"device_login must be true or false ({DEVICE_LOGIN_OFF_REASON})")
        return value


class CasdoorSpec(_Strict):
    #: the Casdoor cert our applications sign tokens with
    cert: str = Field(default="cert-hanzo", min_length=1, max_length=100)


class TenantFile(_Strict):
    version: Literal[1]
    casdoor: CasdoorSpec = CasdoorSpec()
    plans: dict[Name, PlanSpec] = Field(default_factory=dict)
    organizations: list[OrganizationSpec] = Field(default_factory=list)


Path = tuple[str | int, ...]


def _duplicates(names: list[str]) -> list[int]:
    seen: set[str] = set()
    dupes = []
    for i, name in enumerate(names):
        if name in seen:
            dupes.append(i)
        seen.add(name)
    return dupes


def login_application(organization: str) -> str:
    """Every organization gets a login application (Casdoor needs one before users)."""
    return f"{organization}-login"


def signup_group(organization: str) -> str:
    """The Casdoor group signed-up users join (group names are global in Casdoor)."""
    return f"{organization}-signup"


def semantic_problems(spec: TenantFile) -> list[tuple[Path, str]]:
    """References and uniqueness the schema alone cannot check."""
    problems: list[tuple[Path, str]] = []
    orgs = spec.organizations
    for i in _duplicates([o.name for o in orgs]):
        problems.append((("organizations", i, "name"), f"duplicate organization {orgs[i].name!r}"))
    if any(o.name in {"admin", "built-in"} for o in orgs):
        i = next(i for i, o in enumerate(orgs) if o.name in {"admin", "built-in"})
        problems.append((("organizations", i, "name"), "'admin'/'built-in' are Casdoor's own"))
    # application names are global in Casdoor (all owned by "admin")
    app_names: list[tuple[str, Path]] = []
    for oi, org in enumerate(orgs):
        app_names.append((login_application(org.name), ("organizations", oi, "name")))
        app_names.append((org_cli_application(org.name), ("organizations", oi, "name")))
        if "-org-" in org.name:
            problems.append(
                (
                    ("organizations", oi, "name"),
                    "'-org-' in a name is Casdoor's shared-application suffix",
                )
            )
        for ai, app in enumerate(org.applications):
            app_names.append((app.name, ("organizations", oi, "applications", ai, "name")))
        if org.plan is not None and org.plan not in spec.plans:
            problems.append(
                (("organizations", oi, "plan"), f"unknown plan {org.plan!r} (not under plans:)")
            )
        for kind, items in (("role", org.roles), ("user", org.users)):
            for i in _duplicates([x.name for x in items]):
                problems.append(
                    (
                        ("organizations", oi, f"{kind}s", i, "name"),
                        f"duplicate {kind} {items[i].name!r} in organization {org.name!r}",
                    )
                )
        known = ", ".join(sorted(KNOWN_SCOPES))
        for kind, granting in (("roles", org.roles), ("applications", org.applications)):
            for gi, item in enumerate(granting):
                for si, scope in enumerate(item.scopes):
                    if scope not in KNOWN_SCOPES:
                        problems.append(
                            (
                                ("organizations", oi, kind, gi, "scopes", si),
                                f"unknown scope {scope!r} (known: {known})",
                            )
                        )
        role_names = {r.name for r in org.roles}
        if org.signup_role is not None and org.signup_role not in role_names:
            problems.append(
                (
                    ("organizations", oi, "signup_role"),
                    f"unknown role {org.signup_role!r} in organization {org.name!r}",
                )
            )
        managing = {r.name for r in org.roles if KEYS_MANAGE in r.scopes}
        if org.signup_role in managing:
            # anyone who signs up would manage every key of the organization
            problems.append(
                (
                    ("organizations", oi, "signup_role"),
                    f"the sign-up role may not grant {KEYS_MANAGE}",
                )
            )
        for ui, user in enumerate(org.users):
            for ri, role in enumerate(user.roles):
                if role not in role_names:
                    problems.append(
                        (
                            ("organizations", oi, "users", ui, "roles", ri),
                            f"unknown role {role!r} in organization {org.name!r}",
                        )
                    )
    names = [n for n, _ in app_names]
    for i in _duplicates(names):
        problems.append(
            (app_names[i][1], f"duplicate application name {names[i]!r} (names are global)")
        )
    return problems
