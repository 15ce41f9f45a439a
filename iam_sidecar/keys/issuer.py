"""Key issuance with Casdoor in the loop: owner must exist, scopes within its roles.

The key store alone knows nothing of Casdoor or of callers; every surface (CLI, HTTP)
issues and rotates keys through here, so the grant rules (``keys.grants``) hold the same
way everywhere and every refusal lands in the audit log.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TypeVar

from hanzo_contract.principal import Limits, Principal
from iam_sidecar.casdoor.resolver import OwnerResolver
from iam_sidecar.errors import (
    GrantRefused,
    KeyNotFound,
    ScopeEscalation,
    UnknownPrincipal,
    UnknownScope,
)
from iam_sidecar.keys.grants import bound_new_key, check_rotation
from iam_sidecar.keys.models import KeyRecord, NewKey
from iam_sidecar.keys.store import KeyStore, validate_scopes

T = TypeVar("T")

#: the organization's plan limits (the tenant file's), read at each issue
PlanOf = Callable[[str], Limits]


class KeyIssuer:
    def __init__(
        self, store: KeyStore, resolver: OwnerResolver, plan_of: PlanOf = lambda _org: Limits()
    ) -> None:
        self.store = store
        self.resolver = resolver
        self.plan_of = plan_of

    async def _audited(
        self,
        step: Callable[[], Awaitable[T]],
        *,
        action: str,
        actor: str,
        organization: str,
        target: str,
        source: str | None,
    ) -> T:
        """Run ``step``; a refusal of a grant is written to the audit log, then raised."""
        try:
            return await step()
        except (GrantRefused, UnknownScope, UnknownPrincipal) as exc:
            await self.store.audit.record(
                actor=actor,
                action=action,
                outcome=f"denied:{exc.code}",
                organization=organization,
                target=target,
                source=source,
                details=exc.details if isinstance(exc.details, dict) else None,
            )
            raise

    async def _calling_key(self, organization: str, caller: Principal | None) -> KeyRecord | None:
        """The stored record of the key that asks (the assertion's view may be stale)."""
        if caller is None or caller.key_id is None:
            return None
        try:
            return await self.store.show(organization, caller.key_id)
        except KeyNotFound:
            return None

    async def issue(
        self,
        new: NewKey,
        *,
        actor: str = "system",
        source: str | None = None,
        minter: Principal | None = None,
    ) -> tuple[str, KeyRecord]:
        """Issue ``new`` for its owner, bounded by the owner's roles, the plan and, when
        a caller asks (``minter``; ``None`` is the operator), by the caller."""
        organization, owner, owner_kind = new.organization, new.owner, new.owner_kind
        if "/" not in owner or owner.split("/", 1)[0] != organization:
            raise UnknownPrincipal(f"owner {owner!r} is not in organization {organization!r}")

        async def step() -> tuple[str, KeyRecord]:
            requested = validate_scopes(new.scopes)
            parent = await self._calling_key(organization, minter)
            bounded = bound_new_key(
                replace(new, scopes=requested),
                plan=self.plan_of(organization),
                minter=minter,
                parent=parent,
                now=self.store.clock(),
            )
            grant = await self.resolver.resolve(owner, owner_kind, fresh=True)
            if not grant.active:
                raise UnknownPrincipal(
                    f"{owner_kind.value} {owner!r} does not exist or is disabled in Casdoor"
                )
            excess = sorted(requested - grant.scopes)
            if excess:
                raise ScopeEscalation(
                    f"{owner!r} is not granted {', '.join(excess)} by its Casdoor roles",
                    {"excess_scopes": excess, "granted_scopes": sorted(grant.scopes)},
                )
            await self.store.put_grant(grant)
            return await self.store.create(bounded, actor=actor, source=source)

        return await self._audited(
            step,
            action="key.create",
            actor=actor,
            organization=organization,
            target=owner,
            source=source,
        )

    async def rotate(
        self,
        organization: str,
        key_id: str,
        grace_seconds: float,
        *,
        caller: Principal | None = None,
        actor: str = "system",
        source: str | None = None,
    ) -> str:
        """A fresh secret for ``key_id``, handed to ``caller`` (``None``: the operator):
        held to what the caller could mint (``grants.check_rotation``)."""

        async def step() -> str:
            if caller is not None:
                check_rotation(
                    caller,
                    await self.store.show(organization, key_id),
                    plan=self.plan_of(organization),
                    parent=await self._calling_key(organization, caller),
                    now=self.store.clock(),
                )
            return await self.store.rotate(
                organization,
                key_id,
                grace_seconds,
                actor=actor,
                source=source,
                by_key=caller.key_id if caller is not None else None,
            )

        return await self._audited(
            step,
            action="key.rotate",
            actor=actor,
            organization=organization,
            target=key_id,
            source=source,
        )
