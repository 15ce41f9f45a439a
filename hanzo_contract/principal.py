"""Who is calling: the principal every decision and every upstream works from."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class PrincipalKind(StrEnum):
    USER = "user"
    APPLICATION = "application"


class Limits(BaseModel):
    """Rate limit and quotas; ``None`` means unlimited at that level."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    requests_per_minute: int | None = Field(default=None, ge=1)
    units_per_day: int | None = Field(default=None, ge=1)
    units_per_month: int | None = Field(default=None, ge=1)
    #: model tokens (prompt + completion) per UTC day and month, metered from the
    #: upstream's reported ``usage`` by the inference gateway
    tokens_per_day: int | None = Field(default=None, ge=1)
    tokens_per_month: int | None = Field(default=None, ge=1)
    #: the inference models this caller may call; ``None``: every model the gateway serves
    models: tuple[str, ...] | None = None

    def overridden_by(self, other: Limits | None) -> Limits:
        """Fields set on ``other`` (a key's own override) win over the plan's; a key's
        model list can only narrow the plan's (their intersection)."""
        if other is None:
            return self
        update = other.model_dump(exclude_none=True)
        if other.models is not None and self.models is not None:
            update["models"] = tuple(m for m in other.models if m in self.models)
        return self.model_copy(update=update)

    def allows_model(self, model: str) -> bool:
        return self.models is None or model in self.models


class Principal(BaseModel):
    """An authenticated caller.

    ``organization`` is the Casdoor owner, i.e. the tenant. ``subject`` is ``org/name``
    for a user or ``org/app`` for an application. ``scopes`` are the permissions this
    credential carries (for a key: never more than its owner's roles grant).
    ``is_org_admin`` is Casdoor's ``isAdmin``: admin of *this* organization only.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    organization: str = Field(min_length=1, max_length=100)
    subject: str = Field(min_length=1, max_length=255)
    kind: PrincipalKind = PrincipalKind.USER
    roles: tuple[str, ...] = ()
    scopes: frozenset[str] = frozenset()
    key_id: str | None = None
    is_org_admin: bool = False
    limits: Limits = Limits()

    @property
    def user(self) -> str:
        """The subject's name within its organization."""
        return self.subject.split("/", 1)[-1]

    def has(self, permission: str) -> bool:
        return permission in self.scopes
