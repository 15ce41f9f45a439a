"""Secrets the sidecar generates once into the state dir when none are configured."""

from __future__ import annotations

import secrets
from pathlib import Path

from hanzo_contract.settings import write_private


def ensure_secret(directory: Path, name: str, nbytes: int = 32) -> str:
    """Read ``directory/name`` or create it (mode 0600) with a fresh random value."""
    path = directory / name
    if not path.exists():
        value = secrets.token_urlsafe(nbytes)
        write_private(path, value)
        return value
    return path.read_text().strip()
