"""The key verification contract between the sidecar and the gateway plugins.

``POST /v1/keys/verify`` on the sidecar, authenticated with the shared
``Authorization: Bearer <verify token>``, body :class:`VerifyRequest`. A live key answers
200 with :class:`VerifyResponse`; an unknown, revoked or expired key answers 401 with the
shared error body (code ``invalid_key``, ``revoked_key`` or ``expired_key``). The gateway
caches positive answers for at most ``cache_ttl_seconds``: that TTL is the bound on how
long a revoked key can still pass.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from hanzo_contract.principal import Principal, PrincipalKind

VERIFY_PATH = "/v1/keys/verify"


class VerifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, max_length=256)


class VerifyResponse(BaseModel):
    principal: Principal
    cache_ttl_seconds: float = Field(default=5.0, ge=0)


#: Casdoor JWTs (our applications use the ``JWT-Empty`` format, which carries only
#: ``owner``/``name``, never user secrets) name a user or an application but not its
#: scopes. The gateway asks the sidecar, which computes scopes from the user's current
#: Casdoor roles (or the service application's grants in the tenant file), and caches the
#: answer for ``cache_ttl_seconds``. Same auth and error codes as key verification; an
#: unknown or disabled user answers 401 ``unknown_principal``.
RESOLVE_PATH = "/v1/principals/resolve"


class ResolveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: PrincipalKind
    #: for a user: the JWT's ``owner`` and ``name`` claims
    organization: str | None = Field(default=None, max_length=100)
    name: str | None = Field(default=None, max_length=255)
    #: for an application (client-credentials token): the JWT's ``azp`` claim
    client_id: str | None = Field(default=None, max_length=255)
