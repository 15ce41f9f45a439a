"""Session-wide real servers shared by every test area.

``postgres``: a real PostgreSQL 18 + pgvector, run as an unprivileged user on a loopback
port (SCRAM passwords, generated per run); areas create their own databases.

``valkey``: a real Valkey (with RediSearch) on a loopback port; areas use their own key
prefixes.

``casdoor``: a real Casdoor built from its pinned Go module (cached outside the repo),
running on a loopback port with its state in a temp dir. Areas create their own
organizations with unique names, so they never step on each other.

``casdoor_postgres``: the same Casdoor on the session's PostgreSQL (``driverName=postgres``),
started only when a test asks for it (the sidecar's Casdoor tests run on both).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from hanzo_stack.casdoor.server import CasdoorServer
from hanzo_stack.postgres import PostgresServer
from hanzo_stack.valkey import ValkeyServer

#: Hypothesis's 200 ms deadline fails healthy runs on a loaded two-core machine: no test
#: here is about speed (benchmarks are), so every property test runs without one.
settings.register_profile(
    "hanzo",
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile("hanzo")


def pytest_configure(config: pytest.Config) -> None:
    """Never read or write a developer's real state (``~/.local/state/hanzo``, where
    ``hanzo up`` leaves a config file every settings class would pick up)."""
    os.environ["HANZO_STATE_DIR"] = tempfile.mkdtemp(prefix="hanzo-test-state-")
    os.environ.pop("HANZO_CONFIG", None)


@pytest.fixture(scope="session")
def casdoor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CasdoorServer]:
    server = CasdoorServer(tmp_path_factory.mktemp("casdoor-state"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def casdoor_postgres(
    tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer
) -> Iterator[CasdoorServer]:
    database = postgres.create_database("casdoor")
    server = CasdoorServer(
        tmp_path_factory.mktemp("casdoor-pg-state"), database_url=database.owner_dsn
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    server = PostgresServer(tmp_path_factory.mktemp("postgres-state")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyServer]:
    server = ValkeyServer(tmp_path_factory.mktemp("valkey")).start()
    try:
        yield server
    finally:
        server.stop()
