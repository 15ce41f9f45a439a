"""Shared pieces of the observability tests: a memory app over a real Valkey, callers that
sign assertions, and a parser for the Prometheus text the services serve."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

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


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """``{(sample name, labels): value}`` of a Prometheus text exposition."""
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples ``name`` whose labels include ``labels`` (0 when there is
    none): the registry is the process's, so earlier tests may have left other label sets
    (another method, another backend) that match; a test reads how much this sum grew."""
    want = set(labels.items())
    return sum(v for (n, got), v in samples(text).items() if n == name and want <= got)
