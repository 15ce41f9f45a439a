"""The MCP server through the real gateway: the SDK's own client over streamable HTTP (nginx
at /v1/mcp) and over stdio (`hanzo mcp` spawned, forwarding to the gateway's REST API).

Each scenario runs over both transports: the same key gives the same tenant, user and
permissions whichever way an assistant connects.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult

from hanzo_client.credentials import Credentials
from hanzo_contract.assertion import (
    MEMORY_AUDIENCE,
    SIDECAR_AUDIENCE,
    AssertionSigner,
    generate_keypair,
)
from hanzo_contract.headers import ASSERTION
from hanzo_contract.mcp_tools import MCP_PATH, TOOL_PERMISSIONS
from hanzo_contract.principal import Principal
from memory_service.auth import READ
from memory_service.grpc import memory_pb2 as pb
from memory_service.grpc import memory_pb2_grpc as pb_grpc
from tests.e2e.support import MemoryKeys as Keys
from tests.e2e.support import RunningStack, gateway_assertion
from tests.support.assertions import bind_assertion, placeholder


@pytest.fixture(scope="module")
def keys(running_stack: RunningStack) -> Keys:
    return Keys.mint(running_stack, "mcp")


HANZO = Path(sys.executable).parent / "hanzo"
Connect = Callable[[str], AbstractAsyncContextManager[ClientSession]]


@asynccontextmanager
async def _session(read: Any, write: Any) -> AsyncIterator[ClientSession]:
    async with ClientSession(read, write) as session:
        await session.initialize()
        yield session


@pytest.fixture(params=["http", "stdio"])
def connect(request: pytest.FixtureRequest, running_stack: RunningStack, tmp_path: Path) -> Connect:
    gateway = running_stack.gateway

    @asynccontextmanager
    async def over_http(key: str) -> AsyncIterator[ClientSession]:
        headers = {"Authorization": f"Bearer {key}"}
        async with (
            httpx.AsyncClient(headers=headers, timeout=30) as http,
            streamable_http_client(f"{gateway}/v1/mcp", http_client=http) as (read, write, _),
            _session(read, write) as session,
        ):
            yield session

    @asynccontextmanager
    async def over_stdio(key: str) -> AsyncIterator[ClientSession]:
        # the key as `hanzo login` saves it (0600 file in the config dir), no env key
        config = tmp_path / f"config-{uuid.uuid4().hex[:6]}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("HANZO_")}
        env["XDG_CONFIG_HOME"] = str(config)
        os.environ["XDG_CONFIG_HOME"], saved = str(config), os.environ.get("XDG_CONFIG_HOME")
        try:
            Credentials(gateway_url=gateway, casdoor_url=running_stack.info.casdoor_url,
                        organization="-", subject="-", key_id="-", key=key).save()  # fmt: skip
        finally:
            if saved is None:
                del os.environ["XDG_CONFIG_HOME"]
            else:
                os.environ["XDG_CONFIG_HOME"] = saved
        params = StdioServerParameters(command=str(HANZO), args=["mcp"], env=env)
        async with stdio_client(params) as (read, write), _session(read, write) as session:
            yield session

    return over_http if request.param == "http" else over_stdio


def _data(result: CallToolResult) -> Any:
    assert not result.isError, result.content
    if result.structuredContent is not None:
        return result.structuredContent
    return json.loads(result.content[0].text)  # type: ignore[union-attr]


def _error(result: CallToolResult) -> str:
    assert result.isError, result
    return " ".join(getattr(c, "text", "") for c in result.content)


async def test_tools_store_search_get_update_list_delete(connect: Connect, keys: Keys) -> None:
    fact = f"the mcp launch word is {uuid.uuid4().hex}"
    async with connect(keys.alice) as mcp:
        tools = {t.name: t for t in (await mcp.list_tools()).tools}
        assert set(tools) == set(TOOL_PERMISSIONS)
        for tool in tools.values():  # who the caller is never comes from an argument
            props = set(tool.inputSchema.get("properties", {}))
            assert not props & {"tenant", "organization", "org", "user", "owner"}, tool.name

        stored = _data(await mcp.call_tool("memory_store", {"content": fact, "tags": ["mcp"]}))
        assert stored["status"] == "created"
        memory_id = stored["id"]
        hits = _data(
            await mcp.call_tool("memory_search", {"query": fact, "mode": "keyword", "top_k": 3})
        )["results"]
        assert hits[0]["memory"]["id"] == memory_id
        got = _data(await mcp.call_tool("memory_get", {"id": memory_id}))
        assert got["content"] == fact and got["user"] == "alice"

        updated = _data(
            await mcp.call_tool("memory_update", {"id": memory_id, "tags": ["mcp", "edited"]})
        )
        assert updated["tags"] == ["mcp", "edited"]
        listed = _data(await mcp.call_tool("memory_list", {"tags": ["edited"]}))["memories"]
        assert memory_id in [m["id"] for m in listed]
        caps = _data(await mcp.call_tool("memory_capabilities", {}))
        assert "hybrid" in caps["search_modes"]

        assert _data(await mcp.call_tool("memory_delete", {"id": memory_id}))["deleted"]
        assert "not_found" in _error(await mcp.call_tool("memory_get", {"id": memory_id}))


async def test_another_tenants_memory_is_not_found(connect: Connect, keys: Keys) -> None:
    secret = f"acme only {uuid.uuid4().hex}"
    async with connect(keys.alice) as alice:
        memory_id = _data(await alice.call_tool("memory_store", {"content": secret}))["id"]
    async with connect(keys.carol) as carol:
        assert "not_found" in _error(await carol.call_tool("memory_get", {"id": memory_id}))
        assert "not_found" in _error(
            await carol.call_tool("memory_update", {"id": memory_id, "content": "mine now"})
        )
        hits = _data(await carol.call_tool("memory_search", {"query": secret, "mode": "keyword"}))[
            "results"
        ]
        assert all(h["memory"]["id"] != memory_id for h in hits)
        listed = _data(await carol.call_tool("memory_list", {"limit": 500}))["memories"]
        assert all(m["id"] != memory_id for m in listed)
    async with connect(keys.alice) as alice:  # untouched by carol's attempts
        assert _data(await alice.call_tool("memory_get", {"id": memory_id}))["content"] == secret


async def test_read_only_key_is_refused_writes_naming_the_scope(
    connect: Connect, keys: Keys
) -> None:
    async with connect(keys.alice) as alice:
        memory_id = _data(await alice.call_tool("memory_store", {"content": "keep me"}))["id"]
    async with connect(keys.alice_read_only) as mcp:
        refused = _error(await mcp.call_tool("memory_store", {"content": "not allowed"}))
        assert "memory:write" in refused
        refused = _error(await mcp.call_tool("memory_delete", {"id": memory_id}))
        assert "memory:delete" in refused
        # reading is what the key is for
        assert _data(await mcp.call_tool("memory_get", {"id": memory_id}))["id"] == memory_id
    async with connect(keys.alice) as alice:
        assert _data(await alice.call_tool("memory_get", {"id": memory_id}))["id"] == memory_id


async def test_http_endpoint_refuses_without_a_valid_key(
    running_stack: RunningStack, keys: Keys
) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {"Accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient(timeout=30) as http:
        for auth in ({}, {"Authorization": "Bearer hk-not-a-real-key"}):
            r = await http.post(
                f"{running_stack.gateway}/v1/mcp", json=body, headers=headers | auth
            )
            assert r.status_code == 401
            assert r.json()["error"]["code"]


async def test_memory_port_trusts_only_the_gateways_assertion(
    running_stack: RunningStack, keys: Keys
) -> None:
    """Straight at the memory service (no nginx, no plugin): /v1/mcp answers 401 with the
    JSON error body without a valid signed assertion (the gateway's key, for the memory
    service, for this very request), and each tool checks its own permission against the
    assertion's scopes."""
    memory = f"http://127.0.0.1:{running_stack.info.ports['memory']}{MCP_PATH}"
    signer = AssertionSigner((Path(running_stack.info.state_dir) / "assertion.key").read_bytes())
    stranger = AssertionSigner(generate_keypair()[0])
    alice_read = Principal(organization="acme", subject="acme/alice", scopes=frozenset({READ}))
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    accept = {"Accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient(timeout=30) as http:
        for headers in (
            {},
            {"X-Org-Id": "acme", "X-User-Id": "alice", "X-Scopes": READ},  # bare: ignored
            # not the gateway's key
            {ASSERTION: stranger.sign(alice_read, audience=MEMORY_AUDIENCE, method="POST",
                                      path=MCP_PATH)},
            # the gateway's key, but for the sidecar; or for no request in particular
            {ASSERTION: signer.sign(alice_read, audience=SIDECAR_AUDIENCE, method="POST",
                                    path=MCP_PATH)},
            {ASSERTION: signer.sign(alice_read, audience=MEMORY_AUDIENCE)},
        ):  # fmt: skip
            r = await http.post(memory, json=body, headers=accept | headers)
            assert r.status_code == 401, r.text
            assert r.json()["error"]["code"] in {"unauthenticated", "invalid_assertion"}

    def sign_for(method: str, path: str) -> str:
        return signer.sign(alice_read, audience=MEMORY_AUDIENCE, method=method, path=path)

    headers = {ASSERTION: placeholder(sign_for)}  # signed for each request, as nginx does
    async with (
        httpx.AsyncClient(
            headers=headers, event_hooks={"request": [bind_assertion]}, timeout=30
        ) as http,
        streamable_http_client(memory, http_client=http) as (read, write, _),
        _session(read, write) as mcp,
    ):
        refused = _error(await mcp.call_tool("memory_store", {"content": "no"}))
        assert "memory:write" in refused
        listed = _data(await mcp.call_tool("memory_list", {"limit": 5}))
        assert isinstance(listed["memories"], list)


async def test_a_captured_mcp_assertion_is_refused_on_any_other_method_or_path(
    running_stack: RunningStack, keys: Keys
) -> None:
    """The assertion the gateway obtained for ``POST /v1/mcp``, replayed at the memory
    service: accepted for that request, refused under another method, on a REST route and
    on gRPC, although its key holds every memory scope."""
    captured = gateway_assertion(running_stack, keys.alice, "POST", MCP_PATH)
    memory = f"http://127.0.0.1:{running_stack.info.ports['memory']}"
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    accept = {"Accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient(headers={ASSERTION: captured}, timeout=30) as http:
        r = await http.post(f"{memory}{MCP_PATH}", json=body, headers=accept)
        assert r.status_code == 200, r.text  # the request it was issued for
        assert {t["name"] for t in r.json()["result"]["tools"]} == set(TOOL_PERMISSIONS)
        for method, path, payload in (
            ("GET", MCP_PATH, None),
            ("DELETE", MCP_PATH, None),
            ("POST", "/v1/memory/search", {"query": "anything"}),
            ("POST", "/v1/memory/store", {"memories": [{"content": "planted"}]}),
            ("GET", "/v1/memory/retrieve", None),
        ):
            async with asyncio.timeout(30):  # an accepted GET would stream without end
                r = await http.request(method, f"{memory}{path}", json=payload, headers=accept)
            assert r.status_code == 401, (method, path, r.text)
            assert r.json()["error"]["code"] == "invalid_assertion"
    target = f"127.0.0.1:{running_stack.info.ports['memory_grpc']}"
    async with grpc.aio.insecure_channel(target) as channel:
        call = pb_grpc.MemoryServiceStub(channel).List(
            pb.ListRequest(), metadata=(("x-hanzo-identity", captured),)
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
