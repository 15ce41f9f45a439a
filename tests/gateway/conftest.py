"""Gateway test fixtures: assertion keys, and a core over ``FakeSidecar``.

``FakeSidecar`` is a named fake of the sidecar's verify/resolve contract, for unit tests
of the core only; the end-to-end tests run the real sidecar process.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gateway_plugins.core import DecisionCore
from gateway_plugins.limiter.memory import MemoryLimiter
from gateway_plugins.routes import RouteTable
from gateway_plugins.sidecar_client import Rejected, Unavailable
from hanzo_contract.assertion import (
    MEMORY_AUDIENCE,
    AssertionSigner,
    AssertionVerifier,
    ensure_keypair,
)
from hanzo_contract.principal import Limits, Principal
from hanzo_contract.verify import ResolveRequest, VerifyResponse
from hanzo_stack.cli import app as hanzo_app
from hanzo_stack.gateway_install.traefik_build import traefik_binary_path
from hanzo_stack.process import LOOPBACK, free_port
from hanzo_stack.servers import (
    CaddyServer,
    EchoUpstream,
    ForwardAuthServer,
    InstalledGateway,
    NginxServer,
    SidecarServer,
)
from hanzo_stack.valkey import ValkeyCluster
from iam_sidecar.keys.models import NewKey
from iam_sidecar.keys.store import KeyStore
from tests.support.clock import FakeClock
from tests.support.keys import mint_key

#: the gateways the e2e suite also runs through as ``hanzo gateway install`` wrote them
INSTALLED_GATEWAYS = ("nginx", "caddy", "traefik")

ROUTES = """
routes:
  - {methods: [GET], path: /v1/memory/retrieve, permission: memory:read, audience: hanzo-memory}
  - {methods: [POST], path: /v1/memory/store, permission: memory:write, audience: hanzo-memory}
  - {methods: [DELETE], path: "/v1/memory/{id}", permission: memory:delete, audience: hanzo-memory}
  - {methods: [GET, POST], path: "/v1/files/{rest*}", permission: inference:invoke}
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
    return AssertionVerifier(assertion_keys[1].read_bytes(), audience=MEMORY_AUDIENCE)


@pytest.fixture
def sidecar() -> FakeSidecar:
    return FakeSidecar()


#: Alice's key in :func:`alice`: memory:read, one request a minute (the second is limited)
ALICE_KEY = "hk-abcdefghijkl_" + "A" * 43


@pytest.fixture
def alice(sidecar: FakeSidecar) -> Principal:
    """``ALICE_KEY``'s principal, known to the fake sidecar: what the forward-auth tests
    authenticate as (one request a minute, so the second shows the limiter's answer)."""
    principal = Principal(
        organization="acme",
        subject="acme/alice",
        scopes=frozenset({"memory:read"}),
        key_id="abcdefghijkl",
        limits=Limits(requests_per_minute=1),
    )
    sidecar.keys[ALICE_KEY] = principal
    return principal


@pytest.fixture
def clock() -> FakeClock:
    """The core's clock: limiter windows, cache lifetimes and assertion re-signing."""
    return FakeClock()


def unit_core(
    sidecar: FakeSidecar, keys: tuple[Path, Path], workdir: Path, clock: FakeClock, **kw: Any
) -> DecisionCore:
    """A core over ``sidecar`` with :data:`ROUTES`, an in-process limiter (its quotas in
    ``workdir``) and the assertion ``keys``, timed by ``clock``; ``kw``: more options."""
    return DecisionCore(
        routes=RouteTable.from_yaml(ROUTES),
        keys=sidecar,
        resolver=sidecar,
        limiter=MemoryLimiter(workdir / "quotas.sqlite3", clock=clock),
        signer=AssertionSigner(keys[0].read_bytes(), 60),
        assertion_ttl=60,
        clock=clock,
        **kw,
    )


@pytest.fixture
async def core(
    sidecar: FakeSidecar, assertion_keys: tuple[Path, Path], tmp_path: Path, clock: FakeClock
) -> AsyncIterator[DecisionCore]:
    c = unit_core(sidecar, assertion_keys, tmp_path, clock)
    yield c
    await c.aclose()


# ---- real servers for the end-to-end tests ------------------------------------------


@dataclass
class Stack:
    """Real sidecar + forward-auth service + echo upstream, with nginx and Caddy in front."""

    sidecar: SidecarServer
    auth: ForwardAuthServer
    upstream: EchoUpstream
    nginx: NginxServer
    caddy: CaddyServer
    public_key: bytes
    revocation_bound: float
    #: gateways run from what ``hanzo gateway install`` wrote ("nginx-installed", ...)
    installed: dict[str, InstalledGateway]

    def front(self, name: str) -> str:
        if name in self.installed:
            return self.installed[name].url
        return {"nginx": self.nginx.url, "caddy": self.caddy.url}[name]

    async def mint(
        self,
        scopes: tuple[str, ...] = ("memory:read",),
        limits: Limits | None = None,
        organization: str = "acme",
        owner: str = "alice",
    ) -> tuple[str, str]:
        """A fresh key ``(plaintext, key_id)`` in the sidecar's own store. The one session
        stack mints for every gateway's tests, more than the per-owner cap (which the
        sidecar tests check) allows one owner."""
        new = NewKey(
            organization=organization,
            owner=f"{organization}/{owner}",
            name=f"k-{secrets.token_hex(6)}",
            scopes=list(scopes),
            limits=limits,
        )
        return await mint_key(self.sidecar.db_path, self.sidecar.hash_secret, new, cap=10_000)

    async def revoke(self, key_id: str, organization: str = "acme") -> None:
        store = await KeyStore.open(self.sidecar.db_path, self.sidecar.hash_secret.encode())
        try:
            await store.revoke(organization, key_id)
        finally:
            await store.close()


def install_gateway(
    gateway: str, config_dir: Path, auth: ForwardAuthServer, upstream: EchoUpstream
) -> InstalledGateway:
    """``hanzo gateway install GATEWAY`` into a fresh ``config_dir`` from this file's route
    table (every route and any other path to the echo upstream), then that gateway run from
    exactly what was written."""
    config_dir.mkdir(parents=True)
    routes = config_dir.parent / f"{gateway}-routes.yaml"
    routes.write_text(ROUTES)
    port = free_port()
    argv = [
        "gateway", "install", gateway, "--out", str(config_dir), "--routes", str(routes),
        "--listen", f"{LOOPBACK}:{port}", "--auth", auth.addr,
        "--upstream", f"hanzo-memory={upstream.addr}", "--upstream", f"default={upstream.addr}",
        "--body-limit-mb", "1",
    ]  # fmt: skip
    result = CliRunner().invoke(hanzo_app, argv)
    assert result.exit_code == 0, result.output
    binary = str(traefik_binary_path()) if gateway == "traefik" else None
    return InstalledGateway(gateway, config_dir, port, binary).start()


def gateway_env(sidecar: SidecarServer, workdir: Path, **extra: str) -> dict[str, str]:
    env = {
        "HANZO_STATE_DIR": str(workdir / "state"),
        "HANZO_GATEWAY_SIDECAR_URL": sidecar.url,
        "HANZO_GATEWAY_VERIFY_TOKEN": sidecar.verify_token,
        "HANZO_GATEWAY_QUOTA_DB_PATH": str(workdir / "quotas.sqlite3"),
        "HANZO_GATEWAY_POSITIVE_CACHE_MAX_SECONDS": "1",
        "HANZO_GATEWAY_NEGATIVE_CACHE_SECONDS": "0.5",
        "HANZO_GATEWAY_USAGE_REPORT_SECONDS": "0.5",
    }
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def sidecar_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarServer]:
    server = SidecarServer(
        tmp_path_factory.mktemp("gw-sidecar"),
        env={"HANZO_SIDECAR_VERIFY_CACHE_TTL_SECONDS": "1"},
    ).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def stack(
    tmp_path_factory: pytest.TempPathFactory, sidecar_server: SidecarServer
) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("gw-stack")
    started: list[Any] = []
    try:
        upstream = EchoUpstream(work).start()
        started.append(upstream)
        auth = ForwardAuthServer(work, gateway_env(sidecar_server, work)).start()
        started.append(auth)
        nginx = NginxServer(work / "nginx", auth.addr, upstream.addr).start()
        started.append(nginx)
        caddy = CaddyServer(work / "caddy", auth.addr, upstream.addr).start()
        started.append(caddy)
        installed = {}
        for gateway in INSTALLED_GATEWAYS:
            server = install_gateway(gateway, work / f"{gateway}-installed", auth, upstream)
            started.append(server)
            installed[f"{gateway}-installed"] = server
        public_key = (work / "state" / "assertion.pub").read_bytes()
        yield Stack(sidecar_server, auth, upstream, nginx, caddy, public_key, 1.0, installed)
    finally:
        for server in reversed(started):
            server.stop()


@pytest.fixture(scope="session")
def make_gateway_env() -> Any:
    """``gateway_env(sidecar, workdir, **extra)``: env for a forward-auth process."""
    return gateway_env


@pytest.fixture(scope="session")
def mint(stack: Stack) -> Any:
    return stack.mint


@pytest.fixture(scope="session")
def valkey_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyCluster]:
    """Three Valkey primaries, one cluster, shared by the limiter's cluster tests (a test
    that stops a cluster starts its own)."""
    cluster = ValkeyCluster(tmp_path_factory.mktemp("valkey-cluster")).start()
    try:
        yield cluster
    finally:
        cluster.stop()
