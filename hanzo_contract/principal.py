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

    def tightened_by(self, other: Limits | None) -> Limits:
        """Field by field the tighter of both: a key's own limits can only lower its plan's.

        ``None`` is unlimited, so a field set on either side wins over an unset one.
        """
        if other is None:
            return self
        mine, theirs = self.model_dump(), other.model_dump()
        return Limits(
            **{
                name: min(v for v in (mine[name], theirs[name]) if v is not None)
                if mine[name] is not None or theirs[name] is not None
                else None
                for name in mine
            }
        )

    def looser_than(self, bound: Limits) -> list[str]:
        """The fields ``self`` sets higher than ``bound`` does, as a key's own limits: a
        field left unset takes the bound's (see :meth:`tightened_by`), so it is never looser.
        """
        mine, theirs = self.model_dump(), bound.model_dump()
        return [
            name
            for name, limit in theirs.items()
            if limit is not None and mine[name] is not None and mine[name] > limit
        ]


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
