"""The device's API key, kept in the user's config dir with 0600 permissions.

When the key came from a local stack (``state_dir`` is set), the URLs follow that stack:
after ``hanzo down``/``hanzo up`` gave it new ports, :meth:`Credentials.follow` takes the
new URLs from ``<state>/stack.json`` and says that the stack moved.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel, SecretStr, ValidationError

from hanzo_client.local_stack import read_local_stack, signin_url
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
    #: the local stack this key belongs to (``None``: a remote server)
    state_dir: str | None = None

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
        """The saved credentials; ``None`` when there are none or the file is unreadable
        (``forget`` still removes such a file)."""
        path = cls.path()
        try:
            return cls.model_validate_json(path.read_text())
        except (OSError, ValidationError):
            return None

    @classmethod
    def forget(cls) -> bool:
        """Delete the local copy; whether there was one."""
        path = cls.path()
        existed = path.exists()
        path.unlink(missing_ok=True)
        return existed

    def follow(self) -> tuple[Credentials, str | None]:
        """These credentials with the local stack's current URLs (saved if they changed),
        and a sentence saying that the stack moved, or ``None``."""
        if self.state_dir is None:
            return self, None
        stack = read_local_stack(Path(self.state_dir))
        if stack is None or (stack.gateway_url, signin_url(stack)) == (
            self.gateway_url,
            self.casdoor_url,
        ):
            return self, None
        moved = self.model_copy(
            update={"gateway_url": stack.gateway_url, "casdoor_url": signin_url(stack)}
        )
        moved.save()
        return moved, (
            f"the stack in {self.state_dir} moved: gateway {self.gateway_url} -> "
            f"{stack.gateway_url}; saved credentials updated"
        )
