"""Token quotas between the inference gateway and the gateway plugin: reserve, then settle.

A model call's cost is known only after the upstream answered, yet a token quota of N must
stop the first call that would exceed it, not the one after. So the inference gateway
asks the plugin first:

- ``POST /v1/tokens/reserve`` (:class:`TokenReservation`): an estimate of the call's cost
  (the prompt, counted conservatively, plus the most the completion may produce) is added
  to every token counter of the principal if it fits in all of them, atomically, and the
  answer names the reservation (:class:`TokenReserved`, 200). If it does not fit: 429
  ``token_quota_exceeded`` with ``Retry-After`` and ``RateLimit-*`` (the quota's reset).
- ``POST /v1/tokens/charge`` (:class:`TokenCharge`): after the call, what the upstream
  reported; with ``reservation`` set the reservation is settled (the difference refunded,
  or added), without it the tokens are simply added. A reservation never settled (a
  crashed inference gateway) expires and is handed back.

Both on the forward-auth service, authenticated with ``Authorization: Bearer <charge
token>`` (a secret shared by the plugin and the inference gateway only; nginx never routes
these paths). The principal is the one the plugin itself signed into the identity
assertion the inference gateway received.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from hanzo_contract.principal import Principal

TOKEN_CHARGE_PATH = "/v1/tokens/charge"  # noqa: S105 (a path, not a secret)
TOKEN_RESERVE_PATH = "/v1/tokens/reserve"  # noqa: S105 (a path, not a secret)

#: a reservation id: URL-safe random text made by the plugin
_RESERVATION_ID = r"^[A-Za-z0-9_-]{8,64}$"


class TokenReservation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    principal: Principal
    model: str = Field(min_length=1, max_length=200)
    #: the estimate held until the call is settled
    tokens: int = Field(ge=0, le=10**9)


class TokenReserved(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: ``None``: nothing was held (the principal has no token quota, or the counters were
    #: unreachable and the plugin fails open); the charge then just adds the tokens
    reservation: str | None = Field(default=None, pattern=_RESERVATION_ID)
    tokens: int = Field(default=0, ge=0)


class TokenCharge(BaseModel):
    model_config = ConfigDict(extra="forbid")

    principal: Principal
    model: str = Field(min_length=1, max_length=200)
    prompt_tokens: int = Field(default=0, ge=0, le=10**9)
    completion_tokens: int = Field(default=0, ge=0, le=10**9)
    #: the reservation this charge settles (see the module docstring)
    reservation: str | None = Field(default=None, pattern=_RESERVATION_ID)

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens
