"""What the JWT verifier can be told: Casdoor's origin and issuer, audiences, leeway.

Flat fields of the gateway settings (``HANZO_GATEWAY_CASDOOR_URL``, ``[gateway]
jwt_audiences``, ...): :class:`gateway_plugins.settings.GatewaySettings` inherits them.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class JwtSettings(BaseModel):
    #: Casdoor JWT verification; leave ``casdoor_url`` empty to accept API keys only
    casdoor_url: str | None = None
    #: the ``iss`` Casdoor writes (its configured origin); defaults to ``casdoor_url``
    casdoor_issuer: str | None = None
    #: accepted ``aud`` values (the client ids of our Casdoor applications)
    jwt_audiences: list[str] = Field(default_factory=list)
    #: client ids of Casdoor *shared* applications (built-in org, ``isShared``), whose tokens
    #: carry ``aud = <client id>-org-<user's organization>``; the CLI's login app is one
    jwt_shared_audiences: list[str] = Field(default_factory=list)
    #: client ids of one application per tenant, as templates: ``{organization}`` stands for
    #: the token's ``owner``, so ``{organization}_cli`` accepts ``acme_cli`` for acme's users
    #: only (the tenants' CLI applications: ``hanzo_contract.signin``)
    jwt_org_audiences: list[str] = Field(default_factory=list)
    jwt_leeway_seconds: int = Field(default=5, ge=0)
    #: minimum seconds between JWKS refetches triggered by an unknown ``kid``
    jwks_refresh_interval_seconds: float = Field(default=10.0, ge=0)

    def issuer(self) -> str | None:
        return (self.casdoor_issuer or self.casdoor_url or "").rstrip("/") or None
