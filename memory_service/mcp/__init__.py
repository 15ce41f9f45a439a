"""The memory API as an MCP server (streamable HTTP at ``/v1/mcp``), over the service layer."""
