"""The device's API key, kept in the user's config dir with 0600 permissions."""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel, SecretStr

from hanzo_contract.settings import write_private


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "hanzo"


class Credentials(BaseModel):
    gateway_url: str
    casdoor_url: str
    organization: str
    subject: str
    key_id: str
    key: SecretStr

    @staticmethod
    def path() -> Path:
        return config_dir() / "credentials.json"

    def save(self) -> Path:
        path = self.path()
        data = self.model_dump(mode="json") | {"key": self.key.get_secret_value()}
        write_private(path, json.dumps(data, indent=2))
        return path

    @classmethod
    def load(cls) -> Credentials | None:
        path = cls.path()
        if not path.exists():
            return None
        return cls.model_validate_json(path.read_text())

    @classmethod
    def forget(cls) -> None:
        cls.path().unlink(missing_ok=True)
