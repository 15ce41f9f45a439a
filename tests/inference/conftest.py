"""The whole stack as ``hanzo up`` starts it (real Casdoor, sidecar, plugin, memory service,
inference gateway, nginx), with ``FakeChatUpstream`` as the chat model upstream and a tenant
file of its own: two organizations, a plan with a model allow-list, a reader role."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from gateway_plugins.core import DecisionCore
from gateway_plugins.limiter.memory import MemoryLimiter
from gateway_plugins.routes import RouteTable
from hanzo_contract.apikey import generate_key
from hanzo_contract.assertion import AssertionSigner, ensure_keypair
from hanzo_contract.principal import Limits, Principal
from hanzo_stack.process import LOOPBACK, http_ok, pid_alive
from hanzo_stack.stack import Stack, StackInfo
from tests.gateway.conftest import FakeSidecar
from tests.support.clock import FakeClock

from .fake_upstream import FakeChatUpstream

CHAT_MODEL = "fake-chat"
#: served by the fake, but outside the `team` plan's allow-list
PREMIUM_MODEL = "fake-chat-premium"
EMBEDDING_MODEL = "all-MiniLM-L6-v2"

TENANTS = """
version: 1
plans:
  team:
    requests_per_minute: 6000
    models: [all-MiniLM-L6-v2, fake-chat, fake-refuses]
  open:
    requests_per_minute: 6000
organizations:
  - name: infa
    plan: team
    roles:
      - {name: invoker, scopes: [memory:read, memory:write, inference:invoke]}
      - {name: reader, scopes: [memory:read]}
    users:
      - {name: ann, roles: [invoker], password_env: INFA_ANN_PASSWORD}
      - {name: rob, roles: [reader], password_env: INFA_ROB_PASSWORD}
  - name: infb
    plan: open
    roles:
      - {name: invoker, scopes: [memory:read, memory:write, inference:invoke]}
    users:
      - {name: ben, roles: [invoker], password_env: INFB_BEN_PASSWORD}
"""


@dataclass
class InferenceStack:
    stack: Stack
    info: StackInfo
    tenant_file: Path
    fake: FakeChatUpstream

    @property
    def gateway(self) -> str:
        return self.info.gateway_url

    def key(self, org: str, owner: str, scopes: list[str], *extra: str) -> tuple[str, str]:
        """A new key ``(plaintext, key_id)`` minted with the sidecar CLI."""
        args = ["keys", "create", "--org", org, "--owner", owner, "--json",
                "--name", f"t-{time.monotonic_ns()}", *extra]  # fmt: skip
        for scope in scopes:
            args += ["--scope", scope]
        created = json.loads(self.stack._sidecar_cli(self.stack._env(self.tenant_file), *args))
        return created["key"], created["record"]["key_id"]

    def restart_plugin(self) -> None:
        """Stop the forward-auth process (SIGTERM: it flushes its counters as it would in
        any orderly restart); the stack's supervisor starts it again on the same port."""
        pid = int(self.stack.layout.pid_path("gateway").read_text())
        self.stack.kill_part("gateway", signal.SIGTERM)
        deadline = time.monotonic() + 20
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pid_alive(pid), "the plugin did not stop"
        url = f"http://{LOOPBACK}:{self.info.ports['gateway']}/healthz"
        deadline = time.monotonic() + 60
        while not http_ok(url):
            assert time.monotonic() < deadline, "the supervisor did not restart the plugin"
            time.sleep(0.1)

    def usage(self, key: str) -> dict[str, list[dict[str, object]]]:
        reply = httpx.get(f"{self.gateway}/v1/usage", headers=bearer(key), timeout=10)
        assert reply.status_code == 200, reply.text
        return reply.json()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def inference_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InferenceStack]:
    state = tmp_path_factory.mktemp("inference-stack")
    tenant_file = state.parent / f"{state.name}-tenants.yaml"
    tenant_file.write_text(TENANTS)
    fake = FakeChatUpstream().start()
    stack = Stack(state, progress=lambda _: None)
    stack.chat_upstreams = [
        {"name": "fake", "base_url": fake.base_url,
         "models": ["fake-chat", "fake-chat-premium", "fake-refuses"]},
    ]  # fmt: skip
    try:
        info = stack.up(tenant_file, ui=False)
        yield InferenceStack(stack, info, tenant_file, fake)
    finally:
        stack.down(quiet=True)
        fake.stop()


#: the key of ``token_core``'s principal: 10 tokens a day
TOKEN_KEY = generate_key()[0]
TOKEN_ROUTES = """
routes:
  - {methods: [POST], path: /v1/chat/completions, permission: inference:invoke, tokens: true}
  - {methods: [POST], path: /v1/memory/store, permission: inference:invoke}
"""


@pytest.fixture
async def token_core(tmp_path: Path) -> AsyncIterator[tuple[DecisionCore, Principal, FakeClock]]:
    """A decision core over ``FakeSidecar`` and the in-process limiter, with a driven clock;
    its one key (``TOKEN_KEY``) may spend 10 tokens a day."""
    sidecar = FakeSidecar()
    sidecar.keys[TOKEN_KEY] = Principal(
        organization="acme",
        subject="acme/ann",
        key_id="kid1",
        scopes=frozenset({"inference:invoke"}),
        limits=Limits(tokens_per_day=10),
    )
    private, _ = ensure_keypair(tmp_path / "keys")
    clock = FakeClock()
    core = DecisionCore(
        routes=RouteTable.from_yaml(TOKEN_ROUTES),
        keys=sidecar,
        limiter=MemoryLimiter(None, clock=clock),
        signer=AssertionSigner(private.read_bytes(), 60),
        assertion_ttl=60,
        token_reservation_seconds=60,
        clock=clock,
    )
    yield core, sidecar.keys[TOKEN_KEY], clock
    await core.aclose()
