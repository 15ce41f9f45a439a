"""Secrets the sidecar generates once into the state dir when none are configured."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def ensure_secret(directory: Path, name: str, nbytes: int = 32) -> str:
    """Read ``directory/name`` or create it (mode 0600) with a fresh random value."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / name
    if not path.exists():
        value = secrets.token_urlsafe(nbytes)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(value)
        return value
    return path.read_text().strip()
