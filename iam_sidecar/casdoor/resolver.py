"""Who a key owner is right now, according to Casdoor (users) or the tenant file (apps).

Answers are cached for ``ttl`` seconds. When Casdoor is unreachable the last answer is
served (stale beats down for reads); with no answer at all, :class:`UpstreamUnavailable`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from cachetools import TTLCache

from hanzo_contract.principal import PrincipalKind
from iam_sidecar.casdoor.client import CasdoorClient
from iam_sidecar.casdoor.errors import CasdoorUnavailable
from iam_sidecar.casdoor.scopes import scopes_of_user_object
from iam_sidecar.errors import UpstreamUnavailable
from iam_sidecar.keys.models import OwnerGrant
from iam_sidecar.tenants.policy import TenantPolicy


class OwnerResolver:
    def __init__(
        self,
        casdoor: CasdoorClient,
        policy: Callable[[], TenantPolicy],
        ttl: float = 10.0,
    ) -> None:
        self._casdoor = casdoor
        self._policy = policy
        self._fresh: TTLCache[tuple[str, str], OwnerGrant] = TTLCache(10_000, max(ttl, 0.001))
        self._stale: dict[tuple[str, str], OwnerGrant] = {}
        self._clients: TTLCache[str, tuple[str, str]] = TTLCache(1_000, max(ttl, 0.001))

    async def resolve(
        self, owner: str, kind: PrincipalKind = PrincipalKind.USER, fresh: bool = False
    ) -> OwnerGrant:
        """``owner`` is ``org/name``. ``fresh`` skips the cache (key creation, reconcile)."""
        cache_key = (kind.value, owner)
        if not fresh and (hit := self._fresh.get(cache_key)) is not None:
            return hit
        organization, name = owner.split("/", 1)
        try:
            if kind is PrincipalKind.APPLICATION:
                grant = await self._application(organization, name)
            else:
                grant = await self._user(organization, name)
        except CasdoorUnavailable as exc:
            if not fresh and (stale := self._stale.get(cache_key)) is not None:
                return stale
            raise UpstreamUnavailable(f"Casdoor is unavailable: {exc.message}") from None
        self._fresh[cache_key] = grant
        self._stale[cache_key] = grant
        return grant

    async def _user(self, organization: str, name: str) -> OwnerGrant:
        owner = f"{organization}/{name}"
        user = await self._casdoor.get_user(organization, name)
        if not user or user.get("isForbidden") or user.get("isDeleted"):
            return OwnerGrant(owner=owner, active=False, refreshed_at=time.time())
        # get-user carries the user's roles and permissions: one round trip per owner
        role_names, scopes = scopes_of_user_object(user)
        return OwnerGrant(
            owner=owner,
            active=True,
            roles=role_names,
            scopes=scopes,
            is_org_admin=bool(user.get("isAdmin")),
            refreshed_at=time.time(),
        )

    async def _application(self, organization: str, name: str) -> OwnerGrant:
        """A service application exists while the tenant file lists it: it is our
        principal, not a Casdoor object (see ``tenants.model.ApplicationSpec``)."""
        owner = f"{organization}/{name}"
        scopes = self._policy().scopes_for_application(organization, name)
        if scopes is None:
            return OwnerGrant(owner=owner, active=False, refreshed_at=time.time())
        return OwnerGrant(owner=owner, active=True, scopes=scopes, refreshed_at=time.time())

    async def application_by_client_id(self, client_id: str) -> tuple[str, str] | None:
        """``(organization, app name)`` of the Casdoor application with ``client_id``."""
        if (hit := self._clients.get(client_id)) is not None:
            return hit
        try:
            # all organizations' applications (they are all owned by "admin")
            apps = await self._casdoor.call(
                "GET", "/api/get-applications", params={"owner": "admin"}
            )
        except CasdoorUnavailable as exc:
            raise UpstreamUnavailable(f"Casdoor is unavailable: {exc.message}") from None
        for app in apps or []:
            if app.get("clientId"):
                self._clients[app["clientId"]] = (app.get("organization", ""), app["name"])
        return self._clients.get(client_id)
