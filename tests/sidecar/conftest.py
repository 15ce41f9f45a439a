"""Fixtures for the sidecar tests: a fresh key store on each engine, settings in a temp dir.

``store_target`` is parametrized over SQLite and PostgreSQL (the session's real server, a
fresh database per test, migrated by its owner role and served by its application role),
so every test that takes ``store`` (or opens one with :func:`open_store`) runs on both.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from iam_sidecar.keys.store import KeyStore

from .helpers import ManualClock, StoreTarget

ENGINES = ("sqlite", "postgres")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(params=ENGINES)
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreTarget]:
    """Where a test's key store lives; PostgreSQL starts only when a test asks for it."""
    if request.param == "sqlite":
        yield StoreTarget("sqlite", tmp_path / "keys.db")
        return
    postgres = request.getfixturevalue("postgres")
    name = f"sidecar_{uuid.uuid4().hex[:12]}"
    database = postgres.create_database(name, roles="hanzo_sidecar_test")
    try:
        yield StoreTarget("postgres", database.app_dsn, database.owner_dsn)
    finally:
        postgres.drop_database(name)


@pytest.fixture
async def store(store_target: StoreTarget, clock: ManualClock) -> AsyncIterator[KeyStore]:
    """A key store on ``clock``: tests about expiry and grace move it instead of sleeping."""
    opened = await store_target.open(secrets.token_bytes(32), clock=clock)
    try:
        yield opened
    finally:
        await opened.close()
