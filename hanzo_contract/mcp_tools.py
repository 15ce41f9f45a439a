"""The MCP tools both MCP servers expose (the memory service's ``/v1/mcp`` and the stdio
``hanzo mcp``), with the permission each needs: the same as its REST route, so an assistant
holding a key can do through MCP exactly what the key allows through REST."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final, Literal

SERVER_NAME: Final = "hanzo-memory"
MCP_PATH: Final = "/v1/mcp"

#: tool name -> permission it needs (``None``: any authenticated caller)
TOOL_PERMISSIONS: Final[dict[str, str | None]] = {
    "memory_store": "memory:write",
    "memory_search": "memory:read",
    "memory_get": "memory:read",
    "memory_list": "memory:read",
    "memory_update": "memory:write",
    "memory_delete": "memory:delete",
    "memory_capabilities": "memory:read",
}

TOOL_DESCRIPTIONS: Final[dict[str, str]] = {
    "memory_store": "Store one memory (a fact, preference or note) for later recall.",
    "memory_search": "Search your memories by meaning (vector), words (keyword) or both (hybrid).",
    "memory_get": "Fetch one memory by its id.",
    "memory_list": "List your memories, newest first, optionally by namespace or tag.",
    "memory_update": "Change a memory's content, tags, metadata or importance.",
    "memory_delete": "Delete a memory by its id.",
    "memory_capabilities": "What this memory service supports: search modes, limits, model.",
}

Mode = Literal["vector", "keyword", "hybrid"]

#: a tool's body: its name and the arguments the caller gave (``None`` ones left out)
ToolCall = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


def _given(arguments: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in arguments.items() if v is not None and k != "self"}


class MemoryTools:
    """The tools' signatures, written once: FastMCP reads each tool's input schema from its
    signature, so both servers expose the same arguments only if both use these. Each server
    passes its ``call`` (the memory service: the service itself; ``hanzo mcp``: one REST
    call) and registers :meth:`functions`."""

    def __init__(self, call: ToolCall) -> None:
        self._call = call

    def functions(self) -> dict[str, Callable[..., Awaitable[dict[str, Any]]]]:
        """Tool name -> its function, for ``FastMCP.tool(name=..., description=...)``."""
        return {name: getattr(self, name) for name in TOOL_PERMISSIONS}

    async def memory_store(
        self,
        content: str,
        namespace: str | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        importance: float | None = None,
        scope: Literal["user", "org"] | None = None,
        ttl_seconds: int | None = None,
        id: str | None = None,
    ) -> dict[str, Any]:
        return await self._call("memory_store", _given(locals()))

    async def memory_search(
        self,
        query: str,
        mode: Mode = "hybrid",
        top_k: int = 10,
        namespace: str | None = None,
        tags: list[str] | None = None,
        min_score: float | None = None,
    ) -> dict[str, Any]:
        return await self._call("memory_search", _given(locals()))

    async def memory_get(self, id: str) -> dict[str, Any]:
        return await self._call("memory_get", _given(locals()))

    async def memory_list(
        self, namespace: str | None = None, tags: list[str] | None = None, limit: int = 20
    ) -> dict[str, Any]:
        return await self._call("memory_list", _given(locals()))

    async def memory_update(
        self,
        id: str,
        content: str | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        importance: float | None = None,
    ) -> dict[str, Any]:
        return await self._call("memory_update", _given(locals()))

    async def memory_delete(self, id: str) -> dict[str, Any]:
        return await self._call("memory_delete", _given(locals()))

    async def memory_capabilities(self) -> dict[str, Any]:
        return await self._call("memory_capabilities", {})
