"""Gateway plugin settings: ``HANZO_GATEWAY_*`` env vars, then ``[gateway]`` in HANZO_CONFIG.

Each configured piece keeps its settings beside its behaviour (``limiter/settings.py``,
``jwt/settings.py``, ``cache/settings.py``); this class only assembles them, as flat
fields, so every env var and TOML key keeps its one short name.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from gateway_plugins.cache.settings import CacheSettings
from gateway_plugins.jwt.settings import JwtSettings
from gateway_plugins.limiter.settings import LimiterSettings
from hanzo_contract.forwarded import DEFAULT_TRUSTED_PROXIES, parse_networks
from hanzo_contract.settings import HanzoSettings, default_state_dir


class GatewaySettings(HanzoSettings, JwtSettings, CacheSettings, LimiterSettings):
    model_config = SettingsConfigDict(env_prefix="HANZO_GATEWAY_", extra="ignore")
    config_section: ClassVar[str] = "gateway"

    #: the IAM sidecar that verifies keys and resolves JWT principals
    sidecar_url: str = "http://127.0.0.1:8090"
    #: several sidecars, asked in order (``HANZO_GATEWAY_SIDECAR_URLS='["http://a",
    #: "http://b"]'``); when set, ``sidecar_url`` is not used
    sidecar_urls: list[str] = Field(default_factory=list)
    verify_token: SecretStr = SecretStr("")
    sidecar_timeout_seconds: float = Field(default=2.0, gt=0)
    #: a sidecar that does not accept the connection this fast is passed over
    sidecar_connect_timeout_seconds: float = Field(default=0.25, gt=0)
    #: how long a sidecar that failed rests before it is asked again
    sidecar_backoff_seconds: float = Field(default=5.0, ge=0)

    #: YAML route table; ``None`` uses the bundled default (the Hanzo memory API)
    routes_file: Path | None = None

    #: Ed25519 key for the identity assertion; when unset, ``assertion.key`` in the state
    #: dir (``ensure_keypair(state_dir)``), where the sidecar and upstreams find the ``.pub``
    assertion_key_file: Path | None = None
    assertion_ttl_seconds: int = Field(default=60, ge=5)

    #: bearer secret of ``POST /v1/tokens/charge``, shared with the inference gateway
    #: only; empty turns the endpoint off
    charge_token: SecretStr = SecretStr("")
    #: proxies (CIDRs) whose X-Forwarded-For names the client in audit rows; from anyone
    #: else the TCP peer is the client. Loopback: the gateway runs on this host.
    trusted_proxies: list[str] = Field(default_factory=lambda: list(DEFAULT_TRUSTED_PROXIES))

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        parse_networks(value)
        return value

    #: access lines are written in batches: when this many have gathered, or this long
    #: after the first (and at shutdown); a SIGKILL loses at most the interval's lines
    access_log_max_lines: int = Field(default=256, ge=1)
    access_log_flush_seconds: float = Field(default=0.2, gt=0)
    #: answer the auth endpoints from the HTTP protocol (``http_protocol.py``); off, every
    #: request is served as ASGI by uvicorn's own protocol (same answers, more CPU each)
    answer_in_place: bool = True

    audit_queue_size: int = Field(default=1000, ge=1)
    #: how often allowed-request counts go to the sidecar's usage counters
    usage_report_seconds: float = Field(default=10.0, gt=0)

    def resolved_sidecar_urls(self) -> list[str]:
        """The sidecars to ask, in order: ``sidecar_urls``, else the one ``sidecar_url``."""
        return list(self.sidecar_urls) or [self.sidecar_url]

    def state_dir(self) -> Path:
        return default_state_dir() / "gateway"

    def resolved_assertion_key_file(self) -> Path:
        return self.assertion_key_file or default_state_dir() / "assertion.key"

    def resolved_quota_db_path(self) -> Path:
        return self.quota_db_path or self.state_dir() / "quotas.sqlite3"
