"""Inference gateway settings: ``HANZO_INFERENCE_*`` env vars, then ``[inference]``.

Upstreams are OpenAI-compatible servers, each serving the models it names; a request goes
to the upstream that serves its ``model``. ``identity: true`` marks one of our own
services (the memory service's embeddings), which gets the gateway's identity assertion;
a third-party upstream never sees it and gets its own ``api_key`` instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from hanzo_contract.settings import HanzoSettings, default_state_dir


class UpstreamSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    #: base URL including the API version, e.g. ``https://api.openai.com/v1``
    base_url: str = Field(pattern=r"^https?://")
    models: list[str] = Field(min_length=1)
    api_key: SecretStr | None = None
    #: forward the caller's identity assertion (our own services only)
    identity: bool = False
    #: ``max_tokens`` sent for a chat call that names none (default: the gateway's)
    default_max_tokens: int | None = Field(default=None, ge=1)
    #: where the upstream says it is ready (200), checked by our ``/readyz``: for the
    #: memory service's embeddings its ``/readyz``, which answers once the model is loaded
    ready_url: str | None = Field(default=None, pattern=r"^https?://")


class InferenceSettings(HanzoSettings):
    model_config = SettingsConfigDict(env_prefix="HANZO_INFERENCE_", extra="ignore")
    config_section: ClassVar[str] = "inference"

    upstreams: list[UpstreamSettings] = Field(default_factory=list)
    #: the gateway plugin's forward-auth service, where token charges go
    plugin_url: str = "http://127.0.0.1:8200"
    charge_token: SecretStr = SecretStr("")
    #: public half of the plugin's assertion key (default ``<state dir>/assertion.pub``)
    assertion_public_key: Path | None = None
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    #: the longest silence between two bytes of an upstream answer
    read_timeout_seconds: float = Field(default=300.0, gt=0)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    #: ``max_tokens`` sent for a chat call that names none: the completion's share of the
    #: tokens reserved against the caller's quota before the call (see ``estimate.py``)
    default_max_tokens: int = Field(default=1024, ge=1)

    def resolved_public_key(self) -> Path:
        return self.assertion_public_key or default_state_dir() / "assertion.pub"
