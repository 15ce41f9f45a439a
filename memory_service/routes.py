"""The route table: each endpoint translates HTTP to a :class:`MemoryService` call and back,
and declares the permission it needs with :func:`~memory_service.auth.requires`."""

from __future__ import annotations

from collections.abc import AsyncIterator

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from hanzo_contract.openapi import MEMORY_OPENAPI_PATH, Operation, operation
from memory_service.auth import DELETE, READ, WRITE, principal_of, requires
from memory_service.body import import_lines, parse_json, read_limited, read_model, validate
from memory_service.cursor import decode_cursor, encode_cursor
from memory_service.erasure import ERASE_PATH, ErasureReceipt, ErasureRequest
from memory_service.models import (
    Capabilities,
    DeleteResponse,
    ImportLine,
    ImportResponse,
    ListResponse,
    MemoryIn,
    MemoryOut,
    SearchRequest,
    SearchResponse,
    StoreRequest,
    StoreResponse,
    UpdateRequest,
)
from memory_service.openai_embeddings import INVOKE, EmbeddingsRequest, embeddings
from memory_service.openapi import RETRIEVE_PARAMS, openapi_document
from memory_service.query import list_params
from memory_service.service import MemoryService, to_out


def _json(model: BaseModel, status: int = 200) -> JSONResponse:
    return JSONResponse(model.model_dump(mode="json"), status_code=status)


def _svc(request: Request) -> MemoryService:
    return request.app.state.service


@operation(
    Operation(
        "storeMemories",
        "Store one memory, or a batch (upsert by id, dedup by content)",
        WRITE,
        response=StoreResponse,
        body=StoreRequest,
        errors=(409, 422),
    )
)
@requires(WRITE)
async def store(request: Request) -> Response:
    svc = _svc(request)
    data = parse_json(await read_limited(request, svc.settings.max_body_bytes))
    if isinstance(data, dict) and "memories" not in data:
        items = [validate(MemoryIn, data)]
    else:
        items = validate(StoreRequest, data).memories
    results = await svc.store(principal_of(request), items)
    return _json(StoreResponse(ids=[r.id for r in results], results=results))


@operation(
    Operation(
        "retrieveMemories",
        "Fetch one memory by id, or list with filters and a cursor",
        READ,
        response=ListResponse,
        errors=(404, 422),
        extra_params=RETRIEVE_PARAMS,
    )
)
@requires(READ)
async def retrieve(request: Request) -> Response:
    params = list_params(request.query_params)
    svc = _svc(request)
    principal = principal_of(request)
    if params.id is not None:
        record = await svc.get(principal, params.id)
        return _json(ListResponse(memories=[to_out(record)], next_cursor=None))
    after = decode_cursor(params.cursor) if params.cursor else None
    records, nxt = await svc.list(principal, params.filters, after, params.limit)
    cursor = encode_cursor(*nxt) if nxt else None
    return _json(ListResponse(memories=[to_out(r) for r in records], next_cursor=cursor))


@operation(
    Operation(
        "searchMemories",
        "Vector, keyword or hybrid search",
        READ,
        response=SearchResponse,
        body=SearchRequest,
        errors=(422,),
    )
)
@requires(READ)
async def search(request: Request) -> Response:
    svc = _svc(request)
    req = await read_model(request, SearchRequest, svc.settings.max_body_bytes)
    results = await svc.search(principal_of(request), req)
    return _json(SearchResponse(mode=req.mode, results=results))


@operation(
    Operation(
        "updateMemory",
        "Update content, metadata, tags, importance or expiry",
        WRITE,
        response=MemoryOut,
        body=UpdateRequest,
        errors=(404, 422),
    )
)
@requires(WRITE)
async def update(request: Request) -> Response:
    svc = _svc(request)
    req = await read_model(request, UpdateRequest, svc.settings.max_body_bytes)
    record = await svc.update(principal_of(request), request.path_params["id"], req)
    return _json(to_out(record))


@operation(
    Operation(
        "deleteMemory",
        "Delete a memory from storage and every index",
        DELETE,
        response=DeleteResponse,
        errors=(404,),
    )
)
@requires(DELETE)
async def delete(request: Request) -> Response:
    memory_id = request.path_params["id"]
    await _svc(request).delete(principal_of(request), memory_id)
    return _json(DeleteResponse(id=memory_id, deleted=True))


@operation(
    Operation(
        "eraseMemories",
        "Erase every memory of a user (yourself; another user needs an org admin), or of "
        "the whole organization (no user; org admin): storage, indexes, caches",
        DELETE,
        response=ErasureReceipt,
        body=ErasureRequest,
        errors=(422,),
    )
)
@requires(DELETE)
async def erase_memories(request: Request) -> Response:
    svc = _svc(request)
    body = await read_model(request, ErasureRequest, svc.settings.max_body_bytes)
    return _json(await svc.erase(principal_of(request), body))


@operation(
    Operation(
        "memoryCapabilities",
        "Backend, search modes, embedding model, limits and features",
        READ,
        response=Capabilities,
    )
)
@requires()
async def capabilities(request: Request) -> Response:
    return _json(_svc(request).capabilities())


@operation(
    Operation(
        "exportMemories",
        "Export the caller's visible memories as JSON lines",
        READ,
        response=ImportLine,
        response_media="application/x-ndjson",
    )
)
@requires(READ)
async def export(request: Request) -> Response:
    svc = _svc(request)
    principal = principal_of(request)

    async def lines() -> AsyncIterator[bytes]:
        async for line in svc.export(principal):
            yield line.model_dump_json(exclude_none=True).encode() + b"\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@operation(
    Operation(
        "importMemories",
        "Import JSON lines (as exported)",
        WRITE,
        response=ImportResponse,
        body=ImportLine,
        body_media="application/x-ndjson",
        errors=(422,),
    )
)
@requires(WRITE)
async def import_(request: Request) -> Response:
    svc = _svc(request)
    principal = principal_of(request)
    raw = await read_limited(request, svc.settings.max_import_bytes)
    items, expired = import_lines(raw, svc.clock())
    counts = {"created": 0, "updated": 0, "duplicate": 0}
    batch = svc.settings.max_batch
    for start in range(0, len(items), batch):
        for result in await svc.store(principal, items[start : start + batch]):  # type: ignore[arg-type]
            counts[result.status] += 1
    return _json(ImportResponse(**counts, expired=expired))


@operation(Operation("memoryOpenApi", "This document", None))
async def openapi(_request: Request) -> Response:
    return JSONResponse(openapi_document(ROUTES))


async def openapi_private(_request: Request) -> Response:
    """The same document on the service's own port (older callers; not a public route)."""
    return JSONResponse(openapi_document(ROUTES))


async def healthz(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


ROUTES = [
    Route("/v1/memory/store", store, methods=["POST"]),
    Route("/v1/memory/retrieve", retrieve, methods=["GET"]),
    Route("/v1/memory/search", search, methods=["POST"]),
    Route("/v1/memory/capabilities", capabilities, methods=["GET"]),
    Route("/v1/memory/export", export, methods=["GET"]),
    Route("/v1/memory/import", import_, methods=["POST"]),
    Route(ERASE_PATH, erase_memories, methods=["POST"]),
    Route("/v1/memory/{id:str}", update, methods=["PATCH"]),
    Route("/v1/memory/{id:str}", delete, methods=["DELETE"]),
    Route(
        "/v1/embeddings",
        operation(
            Operation(
                "createEmbeddings",
                "OpenAI-compatible embeddings from this service's own model",
                INVOKE,
                body=EmbeddingsRequest,
                errors=(404, 422),
            )
        )(embeddings),
        methods=["POST"],
    ),
    Route(MEMORY_OPENAPI_PATH, openapi, methods=["GET"]),  # public: no requires()
    Route("/openapi.json", openapi_private, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),  # open
]
