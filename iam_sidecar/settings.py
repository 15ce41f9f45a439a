"""Sidecar settings: ``HANZO_SIDECAR_*`` env vars, then ``[sidecar]`` in ``HANZO_CONFIG``.

Secrets left unset are generated once into the state dir (``HANZO_STATE_DIR``) and reused,
so nothing secret is ever hard-coded and restarts keep the same keys valid.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from hanzo_contract.assertion import ensure_keypair
from hanzo_contract.forwarded import DEFAULT_TRUSTED_PROXIES
from hanzo_contract.settings import HanzoSettings, default_state_dir, ensure_secret


class SidecarSettings(HanzoSettings):
    model_config = SettingsConfigDict(env_prefix="HANZO_SIDECAR_", extra="ignore")
    config_section: ClassVar[str] = "sidecar"

    state_dir: Path = Field(default_factory=default_state_dir)
    #: the SQLite store (the embedded default), used when ``database_url`` is unset
    db_path: Path | None = None
    #: ``postgresql://...``: the store on PostgreSQL, shared by sidecar replicas
    database_url: SecretStr | None = None
    #: a role that may change the schema: migrations run as it, ``database_url``'s role then
    #: gets only what the store needs (unset: ``database_url``'s role migrates)
    database_migrate_url: SecretStr | None = None
    key_hash_secret: SecretStr | None = None
    verify_token: SecretStr | None = None

    casdoor_url: str = "http://127.0.0.1:8000"
    casdoor_client_id: str = ""
    casdoor_client_secret: SecretStr | None = None
    casdoor_timeout_seconds: float = Field(default=5.0, gt=0)
    casdoor_retries: int = Field(default=2, ge=0, le=10)
    #: where Casdoor's pages get our images (the stack's ``/casdoor-static``): the tenant
    #: sync points organizations' and applications' logos, favicons and new users' avatars
    #: there; unset, it leaves those fields alone
    casdoor_assets_url: str | None = None

    tenant_file: Path | None = None
    #: reconcile: re-apply the tenant file and refresh key owners' roles from Casdoor
    reconcile_interval_seconds: float = Field(default=15.0, gt=0)
    reconcile_apply: bool = True
    reconcile_prune: bool = False
    #: how long a user's Casdoor roles -> scopes answer is reused by /v1/principals/resolve
    role_cache_ttl_seconds: float = Field(default=10.0, ge=0)
    #: how long gateways may cache a positive verify answer (bound on revocation delay)
    verify_cache_ttl_seconds: float = Field(default=5.0, ge=0)
    default_rotate_grace_seconds: float = Field(default=3600.0, ge=0)
    #: live keys one owner may hold; one more answers 409 ``too_many_keys``
    max_keys_per_owner: int = Field(default=50, ge=1, le=100_000)
    #: proxies (CIDRs) whose X-Forwarded-For names the client in audit rows
    trusted_proxies: list[str] = Field(default_factory=lambda: list(DEFAULT_TRUSTED_PROXIES))

    assertion_public_key_path: Path | None = None

    @model_validator(mode="after")
    def _fill_generated(self) -> SidecarSettings:
        secret_dir = self.state_dir / "sidecar"
        if self.db_path is None:
            self.db_path = secret_dir / "sidecar.db"
        if self.key_hash_secret is None:
            self.key_hash_secret = SecretStr(ensure_secret(secret_dir, "key_hash_secret"))
        if self.verify_token is None:
            self.verify_token = SecretStr(ensure_secret(secret_dir, "verify_token"))
        if self.assertion_public_key_path is None:
            # Same place the gateway's ``ensure_keypair(state_dir)`` writes its key pair.
            _, self.assertion_public_key_path = ensure_keypair(self.state_dir)
        return self

    @model_validator(mode="after")
    def _postgres_urls(self) -> SidecarSettings:
        for name in ("database_url", "database_migrate_url"):
            value = getattr(self, name)
            if value is not None and not value.get_secret_value().startswith(
                ("postgresql://", "postgres://")
            ):
                raise ValueError(f"{name} must be a postgresql:// URL (SQLite: set db_path)")
        if self.database_migrate_url is not None and self.database_url is None:
            raise ValueError("database_migrate_url needs database_url")
        return self

    @property
    def store_target(self) -> str | Path:
        """Where the key store lives: the PostgreSQL DSN when set, else the SQLite file."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        assert self.db_path is not None
        return self.db_path

    @property
    def store_migrate_dsn(self) -> str | None:
        url = self.database_migrate_url
        return url.get_secret_value() if url is not None else None

    @property
    def hash_secret_bytes(self) -> bytes:
        assert self.key_hash_secret is not None
        return self.key_hash_secret.get_secret_value().encode()
