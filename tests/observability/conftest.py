"""Shared pieces of the observability tests: a memory app over a real Valkey, callers that
sign assertions; the Prometheus text parser is ``tests.support.metrics``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hanzo_contract import telemetry
from hanzo_contract.assertion import (
    MEMORY_AUDIENCE,
    AssertionSigner,
    AssertionVerifier,
    generate_keypair,
)
from memory_service.auth import AssertionAuthenticator
from tests.memory.conftest import Caller


@pytest.fixture(scope="module")
def keypair() -> tuple[bytes, bytes]:
    return generate_keypair()


@pytest.fixture(scope="module")
def authenticator(keypair: tuple[bytes, bytes]) -> AssertionAuthenticator:
    return AssertionAuthenticator(AssertionVerifier(keypair[1], audience=MEMORY_AUDIENCE))


@pytest.fixture
def caller(keypair: tuple[bytes, bytes]) -> Caller:
    return Caller(AssertionSigner(keypair[0]), "org-obs", "alice")


@pytest.fixture(autouse=True)
def tracing_off() -> Iterator[None]:
    """Every test starts and ends with tracing off, as a service does without OTEL_*."""
    telemetry.use_provider(None)
    yield
    telemetry.use_provider(None)
