"""Settings base: ``HANZO_*`` env vars, then an optional TOML config file.

Every service subclasses :class:`HanzoSettings` with its own ``env_prefix`` and
``config_section``. The file named by ``HANZO_CONFIG`` (default: ``<state dir>/hanzo.toml``
if present) is read; its table named after the section (``[sidecar]``, ``[gateway]``,
``[memory]``...) fills what env vars leave unset.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from pathlib import Path
from typing import Any, ClassVar

from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

CONFIG_ENV = "HANZO_CONFIG"


def default_state_dir() -> Path:
    """Where generated secrets and local data live; never inside the git tree."""
    if env := os.environ.get("HANZO_STATE_DIR"):
        return Path(env)
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "hanzo"


def default_cache_dir() -> Path:
    """Where built artefacts (the Casdoor binary, its UI) are cached between runs."""
    if env := os.environ.get("HANZO_CACHE_DIR"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hanzo"


def write_private(path: Path, data: str | bytes) -> None:
    """Write a secret (or state that must stay put: ports, data keys) atomically and
    durably, readable by its owner only (0600 from the first byte): on disk before it
    replaces the old file, the rename on disk too, so a host crash leaves one or the other."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def config_file() -> Path | None:
    """``$HANZO_CONFIG``, else ``<state dir>/hanzo.toml`` when it exists (``hanzo up``
    writes it, so the CLI an operator runs next finds the running stack unaided)."""
    if env := os.environ.get(CONFIG_ENV):
        return Path(env)
    local = default_state_dir() / "hanzo.toml"
    return local if local.exists() else None


class _TomlSection(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], section: str) -> None:
        super().__init__(settings_cls)
        path = config_file()
        data: dict[str, Any] = {}
        if path is not None:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        self._values: dict[str, Any] = data.get(section, {}) if section else data

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._values.items() if k in self.settings_cls.model_fields}


class HanzoSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HANZO_", extra="ignore")
    config_section: ClassVar[str] = ""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = _TomlSection(settings_cls, cls.config_section)
        return init_settings, env_settings, toml, file_secret_settings


def ensure_secret(directory: Path, name: str, nbytes: int = 32) -> str:
    """Read ``directory/name`` or create it (mode 0600) with a fresh random value."""
    path = directory / name
    if not path.exists():
        value = secrets.token_urlsafe(nbytes)
        write_private(path, value)
        return value
    return path.read_text().strip()
