"""The gRPC server: :class:`MemoryService` behind ``hanzo.memory.v1.MemoryService``.

It runs in the memory service's process on its own port (``HANZO_MEMORY_GRPC_PORT``) and
is reached through the gateway: nginx's gRPC listener makes the same auth subrequest to
the plugin as for REST and passes the signed assertion on as ``x-hanzo-identity``
metadata. Each call is authenticated by the app's own :class:`Authenticator`, shown the
call as the HTTP/2 request it is (``POST`` to ``/hanzo.memory.v1.MemoryService/<Method>``,
metadata as headers), so the assertion must be for this service and this very method, as
on REST; then the method's permission (:data:`PERMISSIONS`, the route table's) is checked.
The tenant and user come only from the verified principal.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import grpc
from google.protobuf import json_format
from google.protobuf.struct_pb2 import Struct
from pydantic import BaseModel, ValidationError
from starlette.requests import HTTPConnection

from hanzo_contract.principal import Principal
from memory_service.auth import DELETE, READ, WRITE, Authenticator
from memory_service.cursor import decode_cursor, encode_cursor
from memory_service.errors import ApiError
from memory_service.grpc import memory_pb2 as pb
from memory_service.grpc import memory_pb2_grpc as pb_grpc
from memory_service.models import Filters, MemoryIn, MemoryOut, SearchRequest
from memory_service.service import MemoryService, to_out

log = logging.getLogger("memory_service")
M = TypeVar("M", bound=BaseModel)
Reply = TypeVar("Reply")

#: HTTP status of an ApiError -> the gRPC status a client sees
_STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.ALREADY_EXISTS,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
}
DEFAULT_LIST = 50
MAX_LIST = 500
SERVICE = pb.DESCRIPTOR.services_by_name["MemoryService"].full_name
#: method -> the permission it needs (the gateway's route table says the same per path)
PERMISSIONS = {
    "Store": WRITE, "Search": READ, "Get": READ, "List": READ, "Delete": DELETE,
    "Capabilities": READ,
}  # fmt: skip


def method_path(method: str) -> str:
    """The HTTP/2 ``:path`` of ``method``: what the gateway matched, signed and sent."""
    return f"/{SERVICE}/{method}"


def _time(value: datetime | None) -> str:
    return value.isoformat() if value else ""


def _memory(out: MemoryOut) -> pb.Memory:
    metadata = Struct()
    metadata.update(out.metadata)
    return pb.Memory(
        id=out.id, content=out.content, namespace=out.namespace, scope=out.scope,
        user=out.user or "", metadata=metadata, tags=out.tags, importance=out.importance,
        created_at=_time(out.created_at), updated_at=_time(out.updated_at),
        expires_at=_time(out.expires_at),
    )  # fmt: skip


def _struct(message: Any, name: str) -> dict[str, Any] | None:
    return json_format.MessageToDict(getattr(message, name)) if message.HasField(name) else None


def _model(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate({k: v for k, v in data.items() if v not in (None, "", [])})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg']}" for e in exc.errors()
        )
        raise ApiError(422, "validation_error", problems) from None


class MemoryServicer(pb_grpc.MemoryServiceServicer):
    def __init__(self, service: MemoryService, authenticator: Authenticator) -> None:
        self.service = service
        self.authenticator = authenticator

    def _principal(self, context: grpc.aio.ServicerContext, method: str) -> Principal:
        """The caller of ``method``, verified as REST verifies a request: gRPC routes a call
        here only when its ``:path`` is this method's, so that path is the one bound."""
        headers = [
            (key.lower().encode(), value.encode())
            for key, value in context.invocation_metadata() or ()
            if isinstance(value, str)
        ]
        path = method_path(method)
        call = {"type": "http", "method": "POST", "path": path, "raw_path": path.encode(),
                "headers": headers}  # fmt: skip
        principal = self.authenticator.authenticate(HTTPConnection(call))
        permission = PERMISSIONS[method]
        if permission not in principal.scopes:
            raise ApiError(403, "forbidden", f"permission {permission!r} is required")
        return principal

    async def _answer(
        self, context: grpc.aio.ServicerContext, call: Callable[[], Awaitable[Reply]]
    ) -> Reply:
        """Runs ``call``; an :class:`ApiError` becomes its gRPC status with the safe message."""
        try:
            return await call()
        except ApiError as exc:
            status = _STATUS.get(exc.status, grpc.StatusCode.INTERNAL)
            await context.abort(status, f"{exc.code}: {exc.message}")
        except Exception as exc:  # never a traceback to the client
            log.error("grpc call failed: %s", type(exc).__name__, exc_info=exc)
            await context.abort(grpc.StatusCode.INTERNAL, "internal_error: internal error")
        raise AssertionError("unreachable: abort raises")

    async def Store(
        self, request: pb.StoreRequest, context: grpc.aio.ServicerContext
    ) -> pb.StoreResponse:
        async def call() -> pb.StoreResponse:
            p = self._principal(context, "Store")
            item = _model(MemoryIn, {
                "content": request.content, "namespace": request.namespace,
                "tags": list(request.tags), "scope": request.scope, "id": request.id,
                "metadata": _struct(request, "metadata"),
                "importance": request.importance if request.HasField("importance") else None,
                "ttl_seconds": request.ttl_seconds if request.HasField("ttl_seconds") else None,
            })  # fmt: skip
            (result,) = await self.service.store(p, [item])
            return pb.StoreResponse(id=result.id, status=result.status)

        return await self._answer(context, call)

    async def Search(
        self, request: pb.SearchRequest, context: grpc.aio.ServicerContext
    ) -> pb.SearchResponse:
        async def call() -> pb.SearchResponse:
            p = self._principal(context, "Search")
            filters = _model(Filters, {"namespace": request.namespace, "tags": list(request.tags)})
            req = _model(SearchRequest, {
                "query": request.query, "mode": request.mode, "top_k": request.top_k or None,
                "min_score": request.min_score if request.HasField("min_score") else None,
                "filters": filters,
            })  # fmt: skip
            hits = await self.service.search(p, req)
            return pb.SearchResponse(
                mode=req.mode,
                results=[pb.SearchHit(memory=_memory(h.memory), score=h.score) for h in hits],
            )

        return await self._answer(context, call)

    async def Get(self, request: pb.GetRequest, context: grpc.aio.ServicerContext) -> pb.Memory:
        async def call() -> pb.Memory:
            p = self._principal(context, "Get")
            return _memory(to_out(await self.service.get(p, request.id)))

        return await self._answer(context, call)

    async def List(
        self, request: pb.ListRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListResponse:
        async def call() -> pb.ListResponse:
            p = self._principal(context, "List")
            filters = _model(Filters, {"namespace": request.namespace, "tags": list(request.tags)})
            limit = request.limit or DEFAULT_LIST
            if not 1 <= limit <= MAX_LIST:
                raise ApiError(422, "validation_error", f"limit is 1..{MAX_LIST}")
            after = decode_cursor(request.cursor) if request.cursor else None
            records, nxt = await self.service.list(p, filters, after, limit)
            return pb.ListResponse(
                memories=[_memory(to_out(r)) for r in records],
                next_cursor=encode_cursor(*nxt) if nxt else "",
            )

        return await self._answer(context, call)

    async def Delete(
        self, request: pb.DeleteRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteResponse:
        async def call() -> pb.DeleteResponse:
            p = self._principal(context, "Delete")
            await self.service.delete(p, request.id)
            return pb.DeleteResponse(id=request.id, deleted=True)

        return await self._answer(context, call)

    async def Capabilities(
        self, request: pb.CapabilitiesRequest, context: grpc.aio.ServicerContext
    ) -> pb.CapabilitiesResponse:
        async def call() -> pb.CapabilitiesResponse:
            self._principal(context, "Capabilities")
            caps = self.service.capabilities()
            return pb.CapabilitiesResponse(
                backend=caps.backend, search_modes=caps.search_modes,
                embedding_model=caps.embedding["model"],
                embedding_dimensions=caps.embedding["dimensions"],
                limits=caps.limits, features=caps.features,
            )  # fmt: skip

        return await self._answer(context, call)


async def start_grpc_server(
    service: MemoryService, authenticator: Authenticator, host: str, port: int
) -> grpc.aio.Server:
    """Started and listening on ``host:port`` (loopback: only the gateway reaches it)."""
    server = grpc.aio.server()
    pb_grpc.add_MemoryServiceServicer_to_server(MemoryServicer(service, authenticator), server)
    if server.add_insecure_port(f"{host}:{port}") == 0:
        raise RuntimeError(f"cannot listen for gRPC on {host}:{port}")
    await server.start()
    return server
