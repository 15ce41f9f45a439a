"""Helpers for the end-to-end tests: the running stack and a headless sign-in."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx

from hanzo_client import HanzoClient
from hanzo_client.login import PkceLogin
from hanzo_contract.headers import ASSERTION
from hanzo_stack.servers import EchoUpstream
from hanzo_stack.stack import Stack, StackInfo


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


def headless_browser(casdoor_url: str, org: str, user: str, password: str):
    """Plays the user's browser on Casdoor's sign-in page: posts the credentials the way
    Casdoor's own login page does, then follows the redirect to the CLI's loopback port."""

    def open_browser(authorize_url: str) -> None:
        q = {k: v[0] for k, v in parse_qs(urlparse(authorize_url).query).items()}
        application = "hanzo-cli-org-" + org  # the shared CLI app, seen from this tenant
        reply = httpx.post(
            f"{casdoor_url}/api/login",
            params={
                "clientId": q["client_id"],
                "responseType": "code",
                "redirectUri": q["redirect_uri"],
                "scope": q["scope"],
                "state": q["state"],
                "code_challenge": q["code_challenge"],
                "code_challenge_method": "S256",
            },
            json={
                "application": application,
                "organization": org,
                "username": user,
                "password": password,
                "type": "code",
            },
        ).json()
        assert reply["status"] == "ok", reply
        redirect = {"code": reply["data"], "state": q["state"]}
        threading.Timer(
            0.1, lambda: httpx.get(q["redirect_uri"], params=redirect, timeout=5)
        ).start()

    return open_browser


def pkce_login(stack: RunningStack, org: str, user: str, password: str) -> dict[str, Any]:
    flow = PkceLogin(stack.info.casdoor_url, f"{stack.cli_client_id}-org-{org}")
    return flow.run(headless_browser(stack.info.casdoor_url, org, user, password), timeout=20)


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
