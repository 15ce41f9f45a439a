"""Records the key store hands out: pydantic models, never holding a secret."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from hanzo_contract.apikey import display_prefix
from hanzo_contract.principal import Limits, PrincipalKind


class KeyState(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"
    EXPIRED = "expired"


@dataclass(frozen=True)
class NewKey:
    """The attributes a caller asks a new key to have, named once for every surface.

    Not validated here: the issuer answers an owner outside the organization with 404
    before the store checks the rest (400), and each keeps its own order of refusals.
    """

    organization: str
    owner: str
    name: str
    scopes: Iterable[str]
    owner_kind: PrincipalKind = PrincipalKind.USER
    expires_at: float | None = None
    limits: Limits | None = None
    #: the key that asked for this one (``None``: a user, a manager or the CLI did)
    parent_key_id: str | None = None


class KeyRecord(BaseModel):
    """One API key as stored: metadata, the owner, and the state; no digest, no secret."""

    model_config = ConfigDict(frozen=True)

    key_id: str
    organization: str
    owner: str = Field(description="org/user or org/application")
    owner_kind: PrincipalKind = PrincipalKind.USER
    name: str
    scopes: frozenset[str]
    limits: Limits | None = None
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None
    last_used_at: float | None = None
    rotated_at: float | None = None
    grace_until: float | None = Field(
        default=None, description="the previous secret stays valid until then"
    )
    parent_key_id: str | None = Field(
        default=None, description="the key that minted this one; revoking it revokes this"
    )

    @property
    def prefix(self) -> str:
        return display_prefix(self.key_id)

    def state(self, now: float | None = None) -> KeyState:
        now = time.time() if now is None else now
        if self.revoked_at is not None:
            return KeyState.REVOKED
        if self.expires_at is not None and self.expires_at <= now:
            return KeyState.EXPIRED
        return KeyState.ACTIVE

    def public(self, now: float | None = None) -> dict[str, object]:
        """What lists and the HTTP API show; ``state`` as of ``now`` (the store's clock)."""
        return {
            "key_id": self.key_id,
            "prefix": self.prefix,
            "organization": self.organization,
            "owner": self.owner,
            "owner_kind": self.owner_kind.value,
            "name": self.name,
            "scopes": sorted(self.scopes),
            "limits": self.limits.model_dump(exclude_none=True) if self.limits else None,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "last_used_at": self.last_used_at,
            "rotated_at": self.rotated_at,
            "grace_until": self.grace_until,
            "parent_key_id": self.parent_key_id,
            "state": self.state(now).value,
        }


class OwnerGrant(BaseModel):
    """What Casdoor last said about a key owner: kept so verification works offline."""

    model_config = ConfigDict(frozen=True)

    owner: str
    active: bool
    roles: tuple[str, ...] = ()
    scopes: frozenset[str] = frozenset()
    is_org_admin: bool = False
    refreshed_at: float
