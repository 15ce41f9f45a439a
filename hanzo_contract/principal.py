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

    def tightened_by(self, other: Limits | None) -> Limits:
        """Field by field the tighter of both: a key's own limits can only lower its plan's,
        and its model list can only narrow the plan's (their intersection).

        ``None`` is unlimited (every model, for ``models``), so a field set on either side
        wins over an unset one.
        """
        if other is None:
            return self
        mine, theirs = self.model_dump(), other.model_dump()
        merged: dict[str, object] = {}
        for name, a in mine.items():
            b = theirs[name]
            if a is None or b is None:
                merged[name] = a if b is None else b
            elif name == "models":
                merged[name] = tuple(model for model in b if model in a)
            else:
                merged[name] = min(a, b)
        return Limits.model_validate(merged)

    def looser_than(self, bound: Limits) -> list[str]:
        """The fields ``self`` sets looser than ``bound`` does, as a key's own limits: a
        field left unset takes the bound's (see :meth:`tightened_by`), so it is never looser.
        """
        mine, theirs = self.model_dump(), bound.model_dump()
        looser = []
        for name, limit in theirs.items():
            if limit is None or mine[name] is None:
                continue
            if name == "models":
                if set(mine[name]) - set(limit):
                    looser.append(name)
            elif mine[name] > limit:
                looser.append(name)
        return looser

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
    #: what this credential is charged at: the plan, tightened by a key's own limits
    limits: Limits = Limits()
    #: the organization's plan: its shared bucket is charged at this, never a key's limits
    org_limits: Limits = Limits()

    @property
    def user(self) -> str:
        """The subject's name within its organization."""
        return self.subject.split("/", 1)[-1]

    def has(self, permission: str) -> bool:
        return permission in self.scopes
