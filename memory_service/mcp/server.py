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

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from mcp.server.fastmcp import Context, FastMCP
from mcp.server.fastmcp.exceptions import ToolError
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import BaseModel, ValidationError
from starlette.types import Receive, Scope, Send

from hanzo_contract.mcp_tools import (
    MCP_PATH,
    SERVER_NAME,
    TOOL_DESCRIPTIONS,
    TOOL_PERMISSIONS,
    MemoryTools,
)
from hanzo_contract.principal import Principal
from memory_service.auth import Anonymous, Caller
from memory_service.errors import ApiError, error_response
from memory_service.models import Filters, MemoryIn, SearchRequest, UpdateRequest
from memory_service.service import MemoryService, to_out

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


def _filters(args: dict[str, Any]) -> Filters:
    return _model(
        Filters, {"namespace": args.pop("namespace", None), "tags": args.pop("tags", None)}
    )


async def _store(
    service: MemoryService, principal: Principal, args: dict[str, Any]
) -> dict[str, Any]:
    (result,) = await service.store(principal, [_model(MemoryIn, args)])
    return result.model_dump(mode="json")


async def _search(
    service: MemoryService, principal: Principal, args: dict[str, Any]
) -> dict[str, Any]:
    filters = _filters(args)  # takes namespace and tags out of args
    req = _model(SearchRequest, {**args, "filters": filters})
    hits = await service.search(principal, req)
    return {"mode": req.mode, "results": [h.model_dump(mode="json") for h in hits]}


async def _get(
    service: MemoryService, principal: Principal, args: dict[str, Any]
) -> dict[str, Any]:
    return to_out(await service.get(principal, args["id"])).model_dump(mode="json")


async def _list(
    service: MemoryService, principal: Principal, args: dict[str, Any]
) -> dict[str, Any]:
    filters, limit = _filters(args), args["limit"]
    if not 1 <= limit <= MAX_LIST:
        raise ToolError(f"validation_error: limit is 1..{MAX_LIST}")
    records, _ = await service.list(principal, filters, None, limit)
    return {"memories": [to_out(r).model_dump(mode="json") for r in records]}


async def _update(
    service: MemoryService, principal: Principal, args: dict[str, Any]
) -> dict[str, Any]:
    memory_id = args.pop("id")
    return to_out(
        await service.update(principal, memory_id, _model(UpdateRequest, args))
    ).model_dump(mode="json")


async def _delete(
    service: MemoryService, principal: Principal, args: dict[str, Any]
) -> dict[str, Any]:
    await service.delete(principal, args["id"])
    return {"id": args["id"], "deleted": True}


async def _capabilities(
    service: MemoryService, _p: Principal, _args: dict[str, Any]
) -> dict[str, Any]:
    return service.capabilities().model_dump(mode="json")


#: tool name -> its body over the service, for the principal already checked
_TOOLS: dict[
    str, Callable[[MemoryService, Principal, dict[str, Any]], Awaitable[dict[str, Any]]]
] = {
    "memory_store": _store,
    "memory_search": _search,
    "memory_get": _get,
    "memory_list": _list,
    "memory_update": _update,
    "memory_delete": _delete,
    "memory_capabilities": _capabilities,
}


def build_mcp(service: MemoryService) -> FastMCP:
    """The tools over ``service``.

    ``FastMCP()`` configures the root logger (a Rich console handler at INFO) when nothing
    has yet: a library's app factory must not, or every httpx request of a script that
    builds the app is printed. The root logger is left as the caller had it.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
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
    root.handlers[:] = handlers
    root.setLevel(level)

    async def run(tool: str, args: dict[str, Any]) -> dict[str, Any]:
        """One tool on ``service``, as the verified caller of this request."""
        principal = _principal(mcp.get_context(), tool)
        try:
            return await _TOOLS[tool](service, principal, args)
        except ApiError as exc:
            raise ToolError(f"{exc.code}: {exc.message}") from None

    for name, function in MemoryTools(run).functions().items():
        mcp.tool(name=name, description=TOOL_DESCRIPTIONS[name])(function)
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
