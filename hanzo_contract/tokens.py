"""The token charge: how the inference gateway tells the gateway plugin what a call cost.

``POST /v1/tokens/charge`` on the forward-auth service, authenticated with
``Authorization: Bearer <charge token>`` (a secret shared by the plugin and the inference
gateway only; nginx never routes this path), body :class:`TokenCharge`. The plugin adds the
tokens to the principal's token quota counters (the same persistent store as its request
quotas) and to the usage it reports to the sidecar, per model. The principal is the one
the plugin itself signed into the identity assertion the inference gateway received.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from hanzo_contract.principal import Principal

TOKEN_CHARGE_PATH = "/v1/tokens/charge"  # noqa: S105 (a path, not a secret)


class TokenCharge(BaseModel):
    model_config = ConfigDict(extra="forbid")

    principal: Principal
    model: str = Field(min_length=1, max_length=200)
    prompt_tokens: int = Field(default=0, ge=0, le=10**9)
    completion_tokens: int = Field(default=0, ge=0, le=10**9)

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens
