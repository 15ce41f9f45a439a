"""Key issuance with Casdoor in the loop: owner must exist, scopes within its roles.

The key store alone knows nothing of Casdoor; every surface (CLI, HTTP) issues keys
through here so that scope escalation is refused the same way everywhere.
"""

from __future__ import annotations

from dataclasses import replace

from iam_sidecar.casdoor.resolver import OwnerResolver
from iam_sidecar.errors import ScopeEscalation, UnknownPrincipal
from iam_sidecar.keys.models import KeyRecord, NewKey
from iam_sidecar.keys.store import KeyStore, validate_scopes


class KeyIssuer:
    def __init__(self, store: KeyStore, resolver: OwnerResolver) -> None:
        self.store = store
        self.resolver = resolver

    async def issue(
        self, new: NewKey, *, actor: str = "system", source: str | None = None
    ) -> tuple[str, KeyRecord]:
        requested = validate_scopes(new.scopes)
        organization, owner, owner_kind = new.organization, new.owner, new.owner_kind
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
        return await self.store.create(replace(new, scopes=requested), actor=actor, source=source)
