"""What the tenant file decides beyond Casdoor: plan limits and service-app scopes.

The sidecar serves from this in memory; the tenant loader builds it, tests and the
default server use :data:`EMPTY_POLICY` when no tenant file is configured.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from hanzo_contract.principal import Limits


class TenantPolicy(BaseModel):
    model_config = ConfigDict(frozen=True)

    #: organization -> its plan's limits
    plan_limits: dict[str, Limits] = {}
    #: (organization, application name) -> scopes the tenant file grants that application
    application_scopes: dict[tuple[str, str], frozenset[str]] = {}

    def limits_for(self, organization: str) -> Limits:
        return self.plan_limits.get(organization, Limits())

    def scopes_for_application(self, organization: str, name: str) -> frozenset[str] | None:
        return self.application_scopes.get((organization, name))


EMPTY_POLICY = TenantPolicy()
