"""Key issuance with Casdoor in the loop: owner must exist, scopes within its roles.

The key store alone knows nothing of Casdoor; every surface (CLI, HTTP) creates keys
through here so that scope escalation is refused the same way everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable

from hanzo_contract.principal import Limits, PrincipalKind
from iam_sidecar.errors import ScopeEscalation, UnknownPrincipal
from iam_sidecar.keystore import KeyStore, validate_scopes
from iam_sidecar.models import KeyRecord
from iam_sidecar.resolver import OwnerResolver


class KeyService:
    def __init__(self, store: KeyStore, resolver: OwnerResolver) -> None:
        self.store = store
        self.resolver = resolver

    async def create(
        self,
        *,
        organization: str,
        owner: str,
        name: str,
        scopes: Iterable[str],
        owner_kind: PrincipalKind = PrincipalKind.USER,
        expires_at: float | None = None,
        limits: Limits | None = None,
        actor: str = "system",
        source: str | None = None,
    ) -> tuple[str, KeyRecord]:
        requested = validate_scopes(scopes)
        if "/" not in owner or owner.split("/", 1)[0] != organization:
            raise UnknownPrincipal(f"owner {owner!r} is not in organization {organization!r}")
        grant = await self.resolver.resolve(owner, owner_kind, fresh=True)

        async def refused(outcome: str, details: dict[str, object] | None = None) -> None:
            await self.store.audit.record(
                actor=actor,
                action="key.create",
                outcome=f"denied:{outcome}",
                organization=organization,
                target=owner,
                source=source,
                details=details,
            )

        if not grant.active:
            await refused("unknown_owner")
            raise UnknownPrincipal(
                f"{owner_kind.value} {owner!r} does not exist or is disabled in Casdoor"
            )
        excess = sorted(requested - grant.scopes)
        if excess:
            await refused("scope_escalation", {"excess_scopes": excess})
            raise ScopeEscalation(
                f"{owner!r} is not granted {', '.join(excess)} by its Casdoor roles",
                {"excess_scopes": excess, "granted_scopes": sorted(grant.scopes)},
            )
        await self.store.put_grant(grant)
        return await self.store.create(
            organization=organization,
            owner=owner,
            owner_kind=owner_kind,
            name=name,
            scopes=requested,
            expires_at=expires_at,
            limits=limits,
            actor=actor,
            source=source,
        )
