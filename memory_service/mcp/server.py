"""The MCP server behind the gateway: every tool calls :class:`MemoryService` directly.

One HTTP route (``/v1/mcp``) carries every tool, so the gateway can only require *some*
valid credential there; each tool checks its own permission (the same as its REST route,
from :data:`hanzo_contract.mcp_tools.TOOL_PERMISSIONS`) against the principal that
:mod:`memory_service.auth` verified from the gateway's signed assertion on *this* HTTP
request. The transport is stateless: each POST is authenticated on its own, so no MCP
session outlives the credential that opened it. The tenant and user come only from that
principal; no tool takes them as an argument.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from mcp.server.fastmcp import Context, FastMCP
from mcp.server.fastmcp.exceptions import ToolError
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import BaseModel, ValidationError
from starlette.types import Receive, Scope, Send

from hanzo_contract.mcp_tools import MCP_PATH, SERVER_NAME, TOOL_DESCRIPTIONS, TOOL_PERMISSIONS
from hanzo_contract.principal import Principal
from memory_service.auth import Anonymous, Caller
from memory_service.errors import ApiError, error_response
from memory_service.models import Filters, MemoryIn, SearchRequest, UpdateRequest
from memory_service.service import MemoryService, to_out

Mode = Literal["vector", "keyword", "hybrid"]
M = TypeVar("M", bound=BaseModel)
MAX_LIST = 500  # as the REST listing's limit


def _principal(ctx: Context, tool: str) -> Principal:
    """The verified caller of this request, refused unless it holds the tool's permission."""
    request = ctx.request_context.request
    user = getattr(request, "user", None) if request is not None else None
    if not isinstance(user, Caller):  # MCPEndpoint lets no such request through
        raise ToolError("unauthenticated: no verified identity on this request")
    needed = TOOL_PERMISSIONS[tool]
    if needed is not None and needed not in user.principal.scopes:
        raise ToolError(f"forbidden: permission {needed!r} is required for {tool}")
    return user.principal


def _model(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate({k: v for k, v in data.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg']}" for e in exc.errors()
        )
        raise ToolError(f"validation_error: {problems}") from None


def _refusal(exc: ApiError) -> ToolError:
    return ToolError(f"{exc.code}: {exc.message}")


def build_mcp(service: MemoryService) -> FastMCP:
    """The tools over ``service``."""
    mcp = FastMCP(
        SERVER_NAME,
        stateless_http=True,
        json_response=True,
        streamable_http_path=MCP_PATH,
        # DNS-rebinding protection guards unauthenticated local servers; this one answers
        # only requests carrying the gateway's signed assertion, and behind nginx the Host
        # header is the gateway's, not a loopback name the check would accept.
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )

    @mcp.tool(description=TOOL_DESCRIPTIONS["memory_store"])
    async def memory_store(
        ctx: Context,
        content: str,
        namespace: str | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        importance: float | None = None,
        scope: Literal["user", "org"] | None = None,
        ttl_seconds: int | None = None,
        id: str | None = None,
    ) -> dict[str, Any]:
        p = _principal(ctx, "memory_store")
        item = _model(MemoryIn, {"content": content, "namespace": namespace, "tags": tags,
                                 "metadata": metadata, "importance": importance,
                                 "scope": scope, "ttl_seconds": ttl_seconds, "id": id})  # fmt: skip
        try:
            (result,) = await service.store(p, [item])
        except ApiError as exc:
            raise _refusal(exc) from None
        return result.model_dump(mode="json")

    @mcp.tool(description=TOOL_DESCRIPTIONS["memory_search"])
    async def memory_search(
        ctx: Context,
        query: str,
        mode: Mode = "hybrid",
        top_k: int = 10,
        namespace: str | None = None,
        tags: list[str] | None = None,
        min_score: float | None = None,
    ) -> dict[str, Any]:
        p = _principal(ctx, "memory_search")
        filters = _model(Filters, {"namespace": namespace, "tags": tags})
        req = _model(SearchRequest, {"query": query, "mode": mode, "top_k": top_k,
                                     "min_score": min_score, "filters": filters})  # fmt: skip
        try:
            hits = await service.search(p, req)
        except ApiError as exc:
            raise _refusal(exc) from None
        return {"mode": req.mode, "results": [h.model_dump(mode="json") for h in hits]}

    @mcp.tool(description=TOOL_DESCRIPTIONS["memory_get"])
    async def memory_get(ctx: Context, id: str) -> dict[str, Any]:
        p = _principal(ctx, "memory_get")
        try:
            return to_out(await service.get(p, id)).model_dump(mode="json")
        except ApiError as exc:
            raise _refusal(exc) from None

    @mcp.tool(description=TOOL_DESCRIPTIONS["memory_list"])
    async def memory_list(
        ctx: Context,
        namespace: str | None = None,
        tags: list[str] | None = None,
        limit: int = 20,
    ) -> dict[str, Any]:
        p = _principal(ctx, "memory_list")
        filters = _model(Filters, {"namespace": namespace, "tags": tags})
        if not 1 <= limit <= MAX_LIST:
            raise ToolError(f"validation_error: limit is 1..{MAX_LIST}")
        records, _ = await service.list(p, filters, None, limit)
        return {"memories": [to_out(r).model_dump(mode="json") for r in records]}

    @mcp.tool(description=TOOL_DESCRIPTIONS["memory_update"])
    async def memory_update(
        ctx: Context,
        id: str,
        content: str | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        importance: float | None = None,
    ) -> dict[str, Any]:
        p = _principal(ctx, "memory_update")
        req = _model(UpdateRequest, {"content": content, "tags": tags, "metadata": metadata,
                                     "importance": importance})  # fmt: skip
        try:
            return to_out(await service.update(p, id, req)).model_dump(mode="json")
        except ApiError as exc:
            raise _refusal(exc) from None

    @mcp.tool(description=TOOL_DESCRIPTIONS["memory_delete"])
    async def memory_delete(ctx: Context, id: str) -> dict[str, Any]:
        p = _principal(ctx, "memory_delete")
        try:
            await service.delete(p, id)
        except ApiError as exc:
            raise _refusal(exc) from None
        return {"id": id, "deleted": True}

    @mcp.tool(description=TOOL_DESCRIPTIONS["memory_capabilities"])
    async def memory_capabilities(ctx: Context) -> dict[str, Any]:
        _principal(ctx, "memory_capabilities")
        return service.capabilities().model_dump(mode="json")

    return mcp


class MCPEndpoint:
    """The ``/v1/mcp`` ASGI endpoint: refuses a request without a verified principal with
    the API's 401 JSON body (before the MCP transport sees it), then hands it over."""

    def __init__(self, manager: StreamableHTTPSessionManager) -> None:
        self.manager = manager

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        user = scope.get("user")
        if not isinstance(user, Caller):
            refusal = user.refusal if isinstance(user, Anonymous) else None
            status, code, message = (
                (refusal.status, refusal.code, refusal.message)
                if refusal
                else (401, "unauthenticated", "authentication required")
            )
            await error_response(status, code, message)(scope, receive, send)
            return
        await self.manager.handle_request(scope, receive, send)
