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

from hanzo_contract.principal import Principal

VERIFY_PATH = "/v1/keys/verify"


class VerifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, max_length=256)


class VerifyResponse(BaseModel):
    principal: Principal
    cache_ttl_seconds: float = Field(default=5.0, ge=0)
