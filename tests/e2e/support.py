"""Helpers for the end-to-end tests: the running stack and a headless sign-in
(:mod:`tests.support.headless_login`)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from hanzo_client import HanzoClient
from hanzo_contract.headers import ASSERTION
from hanzo_stack.servers import EchoUpstream
from hanzo_stack.stack import Stack, StackInfo
from tests.support.headless_login import headless_sign_in


@dataclass
class RunningStack:
    stack: Stack
    info: StackInfo
    seeds: dict[str, str]
    echo: EchoUpstream

    @property
    def gateway(self) -> str:
        return self.info.gateway_url

    @property
    def cli_client_id(self) -> str:
        return self.info.cli_client_id

    def password(self, env_name: str) -> str:
        return self.seeds[env_name]


def pkce_login(stack: RunningStack, org: str, user: str, password: str) -> dict[str, Any]:
    return headless_sign_in(stack.info.casdoor_url, stack.cli_client_id, org, user, password)


def gateway_assertion(stack: RunningStack, key: str, method: str, path: str) -> str:
    """The identity assertion the stack's gateway obtains for ``method path`` with ``key``:
    nginx's auth subrequest, made straight to the plugin (as if captured in transit)."""
    reply = httpx.get(
        f"http://127.0.0.1:{stack.info.ports['gateway']}/auth/nginx",
        headers={
            "X-Original-Method": method,
            "X-Original-URI": path,
            "Authorization": f"Bearer {key}",
        },
        timeout=30,
    )
    assert reply.status_code == 200, reply.headers.get("x-hanzo-error")
    return reply.headers[ASSERTION]


def mint_key(
    stack: RunningStack, org: str, user: str, pw_env: str, scopes: list[str], label: str
) -> str:
    """A key minted as `hanzo login` mints a device key: sign in, then POST /v1/keys."""
    tokens = pkce_login(stack, org, user, stack.password(pw_env))
    with HanzoClient(stack.gateway, tokens["access_token"]) as client:
        return client.create_key(f"{label}-{uuid.uuid4().hex[:6]}", scopes)["key"]


@dataclass(frozen=True)
class MemoryKeys:
    """The keys the entry-point tests (MCP, gRPC) call with."""

    alice: str  # acme/alice: memory:read, memory:write, memory:delete
    alice_read_only: str  # acme/alice: memory:read
    carol: str  # globex/carol: memory:read, memory:write (her roles grant no delete)

    @classmethod
    def mint(cls, stack: RunningStack, label: str) -> MemoryKeys:
        rwd = ["memory:read", "memory:write", "memory:delete"]
        alice = ("acme", "alice", "ACME_ALICE_PASSWORD")
        return cls(
            alice=mint_key(stack, *alice, rwd, label),
            alice_read_only=mint_key(stack, *alice, ["memory:read"], label),
            carol=mint_key(stack, "globex", "carol", "GLOBEX_CAROL_PASSWORD", rwd[:2], label),
        )
