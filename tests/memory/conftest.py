"""Fixtures for the memory service: real backends on loopback and temp dirs, real assertions.

Each backend is created once per session; tests isolate themselves by using fresh
organization names, which is also what the service's tenancy promises.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from hanzo_contract.assertion import (
    MEMORY_AUDIENCE,
    AssertionSigner,
    AssertionVerifier,
    generate_keypair,
)
from hanzo_contract.headers import ASSERTION
from hanzo_contract.principal import Principal
from hanzo_stack.postgres import PostgresServer
from hanzo_stack.valkey import ValkeyServer
from memory_service.app import create_app
from memory_service.auth import AssertionAuthenticator
from memory_service.backends.base import MemoryBackend
from memory_service.backends.lance import LanceBackend
from memory_service.backends.postgres import PostgresBackend
from memory_service.backends.redis import RedisBackend
from memory_service.backends.sqlite import SqliteBackend
from memory_service.clock import Clock, now_us
from memory_service.embeddings.deterministic import DeterministicEmbedder
from memory_service.settings import MemorySettings
from tests.memory.assertions import memory_client
from tests.support.assertions import placeholder

BACKENDS = ["sqlite", "lancedb", "redis", "postgres"]
ALL_PERMS = ("memory:read", "memory:write", "memory:delete")
DIM = 384


@pytest.fixture(scope="session")
def keypair() -> tuple[bytes, bytes]:
    return generate_keypair()


@pytest.fixture(scope="session")
def signer(keypair: tuple[bytes, bytes]) -> AssertionSigner:
    return AssertionSigner(keypair[0])


@pytest.fixture(scope="session")
def authenticator(keypair: tuple[bytes, bytes]) -> AssertionAuthenticator:
    return AssertionAuthenticator(AssertionVerifier(keypair[1], audience=MEMORY_AUDIENCE))


def _make_backend(
    kind: str,
    root: Path,
    valkey: Callable[[], ValkeyServer],
    postgres: Callable[[], PostgresServer],
) -> MemoryBackend:
    if kind == "postgres":
        db = postgres().create_database("hanzo_memory")
        return PostgresBackend(db.app_dsn, DIM, migrate_dsn=db.owner_dsn)
    if kind == "sqlite":
        return SqliteBackend(root / "memory.sqlite3", DIM)
    if kind == "lancedb":
        return LanceBackend(root / "lancedb", DIM)
    return RedisBackend(valkey().url, DIM)


@pytest.fixture(scope="session", params=BACKENDS)
async def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[MemoryBackend]:
    kind = request.param
    root = tmp_path_factory.mktemp(f"mem-{kind}")
    b = _make_backend(
        kind,
        root,
        lambda: request.getfixturevalue("valkey"),
        lambda: request.getfixturevalue("postgres"),
    )
    await b.open()
    try:
        yield b
    finally:
        await b.close()


def settings_for(kind: str, root: Path, **overrides: object) -> MemorySettings:
    return MemorySettings(
        backend=kind, data_dir=root, embedder="deterministic", embedding_dim=DIM, **overrides
    )


def build_app(
    backend: MemoryBackend,
    authenticator: AssertionAuthenticator,
    root: Path,
    clock: Clock = now_us,
    **overrides: object,
) -> Starlette:
    return create_app(
        settings_for(backend.name, root, **overrides),
        backend=backend,
        embedder=DeterministicEmbedder(DIM),
        authenticator=authenticator,
        clock=clock,
    )


class MovableClock:
    """The service's clock for a test that moves time forward instead of sleeping through
    it: the real time plus what the test has advanced."""

    def __init__(self) -> None:
        self.offset_us = 0

    def __call__(self) -> int:
        return now_us() + self.offset_us

    def advance(self, seconds: float) -> None:
        self.offset_us += int(seconds * 1_000_000)


@pytest.fixture(scope="session")
async def client(
    backend: MemoryBackend,
    authenticator: AssertionAuthenticator,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the app over the session's backend (no lifespan: backend is open)."""
    app = build_app(backend, authenticator, tmp_path_factory.mktemp("app"))
    async with memory_client(app) as c:
        yield c


class Caller:
    """Signs assertions for one user of one organization, to the memory service."""

    def __init__(
        self, signer: AssertionSigner, org: str, user: str, perms: tuple[str, ...] = ALL_PERMS
    ) -> None:
        self.org, self.user = org, user
        self.principal = Principal(
            organization=org, subject=f"{org}/{user}", scopes=frozenset(perms)
        )
        self._signer = signer

    def sign_for(self, method: str, path: str) -> str:
        """An assertion for ``method path`` on the memory service, as the gateway signs it."""
        return self._signer.sign(self.principal, audience=MEMORY_AUDIENCE, method=method, path=path)

    @property
    def headers(self) -> dict[str, str]:
        """The identity header for a client made by :func:`memory_client`, which binds it to
        the request it is sent with."""
        return {ASSERTION: placeholder(self.sign_for)}


@pytest.fixture
def make_caller(signer: AssertionSigner) -> Callable[..., Caller]:
    def make(
        org: str | None = None, user: str = "alice", perms: tuple[str, ...] = ALL_PERMS
    ) -> Caller:
        return Caller(signer, org or f"org-{uuid.uuid4().hex[:10]}", user, perms)

    return make
