"""Memory service settings: ``HANZO_MEMORY_*`` env vars, then ``[memory]`` in HANZO_CONFIG."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from hanzo_contract.settings import HanzoSettings, default_state_dir


class MemorySettings(HanzoSettings):
    model_config = SettingsConfigDict(env_prefix="HANZO_MEMORY_", extra="ignore")
    config_section: ClassVar[str] = "memory"

    backend: Literal["sqlite", "lancedb", "redis", "postgres"] = "sqlite"
    data_dir: Path = Field(default_factory=lambda: default_state_dir() / "memory")
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: HNSW search breadth for Redis; higher buys recall with latency
    redis_ef_runtime: int = Field(default=200, ge=10, le=4096)
    #: The application role's DSN: owns nothing, NOBYPASSRLS (row-level security applies)
    postgres_dsn: SecretStr | None = None
    #: The schema owner's DSN, used only to run migrations at start; unset: none are run
    postgres_migrate_dsn: SecretStr | None = None
    #: pgvector HNSW search breadth (``hnsw.ef_search``), set per query
    postgres_ef_search: int = Field(default=200, ge=10, le=1000)

    embedder: Literal["local", "http", "deterministic"] = "local"
    embedding_dim: int = Field(default=384, ge=2, le=8192)
    embedding_url: str | None = None
    embedding_model: str = "text-embedding-3-small"
    embedding_api_key: SecretStr | None = None
    embedding_timeout_seconds: float = Field(default=10.0, gt=0)
    #: onnxruntime threads for the local model; unset: the CPUs this process may use
    embedding_threads: int | None = Field(default=None, ge=1, le=256)

    #: ``gateway``: trust only the gateway's signed assertion (the default). ``direct``: no
    #: gateway in front; the stack (``hanzo memory-service serve``, in
    #: ``hanzo_stack.memory_direct``) puts the gateway's decision core in front in-process,
    #: and it hands the app the same signed assertion a gateway would.
    auth_mode: Literal["gateway", "direct"] = "gateway"

    #: gRPC listener (``hanzo.memory.v1``) in this process; unset: none. Loopback by
    #: default: only the gateway (nginx ``grpc_pass``) should reach it.
    grpc_port: int | None = Field(default=None, ge=1, le=65535)
    grpc_host: str = "127.0.0.1"

    #: Public half of the gateway's Ed25519 assertion key pair.
    assertion_public_key: Path = Field(
        default_factory=lambda: default_state_dir() / "assertion.pub"
    )

    #: the operator's key-encryption keys, a JSON file (keep it 0600, outside backups of
    #: the data): ``{"active": "k2", "keys": {"k1": "<base64 of 32 bytes>", "k2": ...}}``.
    #: Set, memories stored with ``sensitive: true`` are sealed (``memory_service.sealing``);
    #: the tenants' wrapped data keys live in ``<data_dir>/data-keys.json``.
    sealing_key_file: Path | None = None

    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_import_bytes: int = Field(default=64 * 1_048_576, ge=1024)
    max_batch: int = Field(default=512, ge=1)
    max_content_chars: int = Field(default=32_768, ge=1)
    max_top_k: int = Field(default=100, ge=1)

    tenant_max_memories: int = Field(default=1_000_000, ge=1)
    tenant_max_bytes: int = Field(default=1 << 30, ge=1)
