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
from typing import Any

from mcp.server.fastmcp import FastMCP
from mcp.server.fastmcp.exceptions import ToolError

from hanzo_client import calls
from hanzo_client.api import AsyncHanzoClient
from hanzo_client.calls import Call
from hanzo_client.errors import HanzoAPIError, HanzoConnectionError
from hanzo_contract.mcp_tools import SERVER_NAME, TOOL_DESCRIPTIONS, MemoryTools


def build_stdio_server(gateway_url: str, key: str) -> FastMCP:
    """The same tools (:class:`MemoryTools`) as the memory service's ``/v1/mcp``, each one
    REST call."""
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

    async def run(tool: str, args: dict[str, Any]) -> dict[str, Any]:
        """One tool as its REST call; ``args`` holds only the arguments given."""
        if tool == "memory_store":
            return (await send(calls.store([args])))["results"][0]
        if tool == "memory_search":
            return await send(calls.search(tag=args.pop("tags", None), **args))
        if tool == "memory_get":
            return (await send(calls.get(args["id"])))["memories"][0]
        if tool == "memory_list":
            page = await send(calls.listing(tag=args.pop("tags", None), **args))
            return {"memories": page["memories"]}
        if tool == "memory_update":
            return await send(calls.update(args.pop("id"), **args))
        if tool == "memory_delete":
            return await send(calls.delete(args["id"])) or {"id": args["id"], "deleted": True}
        return await send(calls.capabilities())

    for name, function in MemoryTools(run).functions().items():
        mcp.tool(name=name, description=TOOL_DESCRIPTIONS[name])(function)
    return mcp
