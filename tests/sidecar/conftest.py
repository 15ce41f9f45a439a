"""Fixtures for the sidecar tests: a fresh key store, settings in a temp state dir."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from iam_sidecar.keys.store import KeyStore

from .helpers import ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def store(tmp_path: Path, clock: ManualClock) -> AsyncIterator[KeyStore]:
    """A key store on ``clock``: tests about expiry and grace move it instead of sleeping."""
    opened = await KeyStore.open(tmp_path / "keys.db", secrets.token_bytes(32), clock=clock)
    try:
        yield opened
    finally:
        await opened.close()
