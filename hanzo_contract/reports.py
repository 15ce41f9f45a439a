"""What the gateway plugins report to the sidecar: refused requests and counted traffic.

``POST /v1/audit/denials`` takes one :class:`DenialReport`; ``POST /v1/usage/report`` takes
one :class:`UsageReport`. Both are authenticated with the shared verify token, like
``/v1/keys/verify``. Identifiers only: a report never carries a credential.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

AUDIT_DENIALS_PATH = "/v1/audit/denials"
USAGE_REPORT_PATH = "/v1/usage/report"


class DenialReport(BaseModel):
    """One request a gateway plugin refused."""

    model_config = ConfigDict(extra="forbid")

    status: int = Field(ge=400, le=599)
    reason: str = Field(min_length=1, max_length=200)
    organization: str | None = Field(default=None, max_length=100)
    subject: str | None = Field(default=None, max_length=255)
    key_id: str | None = Field(default=None, max_length=64)
    method: str | None = Field(default=None, max_length=16)
    path: str | None = Field(default=None, max_length=1024)
    client_ip: str | None = Field(default=None, max_length=64)
    gateway: str | None = Field(default=None, max_length=64)
    request_id: str | None = Field(default=None, max_length=128)


class UsageEntry(BaseModel):
    """Traffic of one caller (organization, subject, key) since the last report."""

    model_config = ConfigDict(extra="forbid")

    organization: str = Field(min_length=1, max_length=100)
    subject: str | None = Field(default=None, max_length=255)
    key_id: str | None = Field(default=None, max_length=64)
    requests: int = Field(default=0, ge=0, le=10**9)
    denials: int = Field(default=0, ge=0, le=10**9)
    #: set for inference traffic: ``requests`` then counts calls of this model, with the
    #: tokens the upstream reported for them
    model: str | None = Field(default=None, min_length=1, max_length=200)
    prompt_tokens: int = Field(default=0, ge=0, le=10**12)
    completion_tokens: int = Field(default=0, ge=0, le=10**12)


class UsageReport(BaseModel):
    """A gateway plugin's batch of counted traffic since its last report."""

    model_config = ConfigDict(extra="forbid")

    entries: list[UsageEntry] = Field(max_length=10_000)
