"""Gateway plugin settings: ``HANZO_GATEWAY_*`` env vars, then ``[gateway]`` in HANZO_CONFIG."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from hanzo_contract.settings import HanzoSettings, default_state_dir


class GatewaySettings(HanzoSettings):
    model_config = SettingsConfigDict(env_prefix="HANZO_GATEWAY_", extra="ignore")
    config_section: ClassVar[str] = "gateway"

    #: the IAM sidecar that verifies keys and resolves JWT principals
    sidecar_url: str = "http://127.0.0.1:8090"
    verify_token: SecretStr = SecretStr("")
    sidecar_timeout_seconds: float = Field(default=2.0, gt=0)

    #: YAML route table; ``None`` uses the bundled default (the Hanzo memory API)
    routes_file: Path | None = None

    #: Casdoor JWT verification; leave ``casdoor_url`` empty to accept API keys only
    casdoor_url: str | None = None
    #: the ``iss`` Casdoor writes (its configured origin); defaults to ``casdoor_url``
    casdoor_issuer: str | None = None
    #: accepted ``aud`` values (the client ids of our Casdoor applications)
    jwt_audiences: list[str] = Field(default_factory=list)
    #: client ids of Casdoor *shared* applications (built-in org, ``isShared``), whose tokens
    #: carry ``aud = <client id>-org-<user's organization>``; the CLI's login app is one
    jwt_shared_audiences: list[str] = Field(default_factory=list)
    jwt_leeway_seconds: int = Field(default=5, ge=0)
    #: minimum seconds between JWKS refetches triggered by an unknown ``kid``
    jwks_refresh_interval_seconds: float = Field(default=10.0, ge=0)

    #: upper bound on how long a positive verify/resolve answer is cached (the revocation
    #: bound is ``min(this, the sidecar's cache_ttl_seconds)``)
    positive_cache_max_seconds: float = Field(default=5.0, ge=0)
    negative_cache_seconds: float = Field(default=1.0, ge=0)
    cache_size: int = Field(default=100_000, ge=1)

    #: Ed25519 key for the identity assertion; when unset, ``assertion.key`` in the state
    #: dir (``ensure_keypair(state_dir)``), where the sidecar and upstreams find the ``.pub``
    assertion_key_file: Path | None = None
    assertion_ttl_seconds: int = Field(default=60, ge=5)

    limiter_backend: Literal["memory", "redis"] = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_timeout_seconds: float = Field(default=0.25, gt=0)
    #: ``open``: allow and log when the limiter store fails (Kong's "fault tolerant");
    #: ``closed``: answer 503 instead
    limiter_fail_mode: Literal["open", "closed"] = "open"
    #: which budgets a request draws on: the credential (key, user or application) and/or
    #: its whole organization
    limit_levels: list[Literal["credential", "organization"]] = Field(
        default_factory=lambda: ["credential"]
    )
    #: SQLite file where the in-process limiter keeps quota counters across restarts
    quota_db_path: Path | None = None
    quota_flush_seconds: float = Field(default=1.0, gt=0)

    audit_queue_size: int = Field(default=1000, ge=1)
    #: how often allowed-request counts go to the sidecar's usage counters
    usage_report_seconds: float = Field(default=10.0, gt=0)

    def state_dir(self) -> Path:
        return default_state_dir() / "gateway"

    def resolved_assertion_key_file(self) -> Path:
        return self.assertion_key_file or default_state_dir() / "assertion.key"

    def resolved_quota_db_path(self) -> Path:
        return self.quota_db_path or self.state_dir() / "quotas.sqlite3"

    def issuer(self) -> str | None:
        return (self.casdoor_issuer or self.casdoor_url or "").rstrip("/") or None
