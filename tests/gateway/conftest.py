"""Gateway test fixtures: assertion keys, and a core over ``FakeSidecar``.

``FakeSidecar`` is a named fake of the sidecar's verify/resolve contract, for unit tests
of the core only; the end-to-end tests run the real sidecar process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway_plugins.core import DecisionCore
from gateway_plugins.limiter.memory import MemoryLimiter
from gateway_plugins.routes import RouteTable
from gateway_plugins.sidecar_client import Rejected, Unavailable
from hanzo_contract.assertion import AssertionSigner, AssertionVerifier, ensure_keypair
from hanzo_contract.principal import Principal
from hanzo_contract.verify import ResolveRequest, VerifyResponse

ROUTES = """
routes:
  - {methods: [GET], path: /v1/memory/retrieve, permission: memory:read}
  - {methods: [POST], path: /v1/memory/store, permission: memory:write}
  - {methods: [DELETE], path: "/v1/memory/{id}", permission: memory:delete}
  - {methods: [GET, POST], path: "/v1/files/{rest*}", permission: files:read}
  - {methods: [GET], path: /healthz, permission: null}
"""


class FakeSidecar:
    """Plays the sidecar's verify/resolve contract from dicts; counts every call."""

    def __init__(self, ttl: float = 5.0) -> None:
        self.keys: dict[str, Principal] = {}
        self.principals: dict[str, Principal] = {}
        self.ttl = ttl
        self.calls = 0
        self.down = False

    async def verify(self, key: str) -> VerifyResponse:
        self.calls += 1
        if self.down:
            raise Unavailable("fake sidecar is down")
        if key not in self.keys:
            raise Rejected("invalid_key", "unknown API key")
        return VerifyResponse(principal=self.keys[key], cache_ttl_seconds=self.ttl)

    async def resolve(self, request: ResolveRequest) -> VerifyResponse:
        self.calls += 1
        name = request.client_id or f"{request.organization}/{request.name}"
        if name not in self.principals:
            raise Rejected("unknown_principal", "unknown user")
        return VerifyResponse(principal=self.principals[name], cache_ttl_seconds=self.ttl)


@pytest.fixture(scope="session")
def assertion_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return ensure_keypair(tmp_path_factory.mktemp("assertion"))


@pytest.fixture
def verifier(assertion_keys: tuple[Path, Path]) -> AssertionVerifier:
    return AssertionVerifier(assertion_keys[1].read_bytes())


@pytest.fixture
def sidecar() -> FakeSidecar:
    return FakeSidecar()


@pytest.fixture
async def core(
    sidecar: FakeSidecar, assertion_keys: tuple[Path, Path], tmp_path: Path
) -> AsyncIterator[DecisionCore]:
    c = DecisionCore(
        routes=RouteTable.from_yaml(ROUTES),
        keys=sidecar,
        resolver=sidecar,
        limiter=MemoryLimiter(tmp_path / "quotas.sqlite3"),
        signer=AssertionSigner(assertion_keys[0].read_bytes(), 60),
        assertion_ttl=60,
    )
    yield c
    await c.aclose()
