"""``hanzo mcp``: an MCP server on stdio for local assistants, forwarding each tool call to
the gateway's REST API with the caller's own key.

Nothing is decided here: the gateway authenticates the key and enforces each route's
permission, and the memory service confines it to its tenant and user. A refusal comes back
as the tool's error result, carrying the API's error code and message.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

from mcp.server.fastmcp import FastMCP
from mcp.server.fastmcp.exceptions import ToolError

from hanzo_client import calls
from hanzo_client.api import AsyncHanzoClient
from hanzo_client.calls import Call
from hanzo_client.errors import HanzoAPIError, HanzoConnectionError
from hanzo_contract.mcp_tools import SERVER_NAME, TOOL_DESCRIPTIONS

Mode = Literal["vector", "keyword", "hybrid"]


def _present(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def build_stdio_server(gateway_url: str, key: str) -> FastMCP:
    """The same tools as the memory service's ``/v1/mcp``, each one REST call."""
    client = AsyncHanzoClient(gateway_url, key, timeout=30)

    @asynccontextmanager
    async def closing(_server: FastMCP) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await client.aclose()

    mcp = FastMCP(SERVER_NAME, lifespan=closing)

    async def send(call: Call) -> Any:
        """One REST call; a refusal becomes the tool's error with the API's code, message
        and details (what exactly was wrong), an unreachable gateway says which URL."""
        try:
            return await client.send(call)
        except HanzoAPIError as exc:
            text = f"{exc.code}: {exc.message}"
            if exc.details:
                text += f" (details: {json.dumps(exc.details, default=str)})"
            raise ToolError(text) from None
        except HanzoConnectionError as exc:
            raise ToolError(f"unavailable: {exc}") from None

    @mcp.tool(description=TOOL_DESCRIPTIONS["memory_store"])
    async def memory_store(
        content: str,
        namespace: str | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        importance: float | None = None,
        scope: Literal["user", "org"] | None = None,
        ttl_seconds: int | None = None,
        id: str | None = None,
    ) -> dict[str, Any]:
        item = _present(
            content=content, namespace=namespace, tags=tags, metadata=metadata,
            importance=importance, scope=scope, ttl_seconds=ttl_seconds, id=id,
        )  # fmt: skip
        return (await send(calls.store([item])))["results"][0]

    @mcp.tool(description=TOOL_DESCRIPTIONS["memory_search"])
    async def memory_search(
        query: str,
        mode: Mode = "hybrid",
        top_k: int = 10,
        namespace: str | None = None,
        tags: list[str] | None = None,
        min_score: float | None = None,
    ) -> dict[str, Any]:
        extra = _present(min_score=min_score)
        return await send(
            calls.search(query, mode=mode, top_k=top_k, namespace=namespace, tag=tags, **extra)
        )

    @mcp.tool(description=TOOL_DESCRIPTIONS["memory_get"])
    async def memory_get(id: str) -> dict[str, Any]:
        return (await send(calls.get(id)))["memories"][0]

    @mcp.tool(description=TOOL_DESCRIPTIONS["memory_list"])
    async def memory_list(
        namespace: str | None = None, tags: list[str] | None = None, limit: int = 20
    ) -> dict[str, Any]:
        page = await send(calls.listing(namespace=namespace, tag=tags, limit=limit))
        return {"memories": page["memories"]}

    @mcp.tool(description=TOOL_DESCRIPTIONS["memory_update"])
    async def memory_update(
        id: str,
        content: str | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        importance: float | None = None,
    ) -> dict[str, Any]:
        return await send(
            calls.update(id, content=content, tags=tags, metadata=metadata, importance=importance)
        )

    @mcp.tool(description=TOOL_DESCRIPTIONS["memory_delete"])
    async def memory_delete(id: str) -> dict[str, Any]:
        return await send(calls.delete(id)) or {"id": id, "deleted": True}

    @mcp.tool(description=TOOL_DESCRIPTIONS["memory_capabilities"])
    async def memory_capabilities() -> dict[str, Any]:
        return await send(calls.capabilities())

    return mcp
