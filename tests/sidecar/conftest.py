"""Fixtures for the sidecar tests: a fresh key store, settings in a temp state dir."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from iam_sidecar.keys.store import KeyStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[KeyStore]:
    opened = await KeyStore.open(tmp_path / "keys.db", secrets.token_bytes(32))
    try:
        yield opened
    finally:
        await opened.close()
