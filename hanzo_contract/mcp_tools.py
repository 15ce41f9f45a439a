"""The MCP tools both MCP servers expose (the memory service's ``/v1/mcp`` and the stdio
``hanzo mcp``), with the permission each needs: the same as its REST route, so an assistant
holding a key can do through MCP exactly what the key allows through REST."""

from __future__ import annotations

from typing import Final

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
